-- WebSocket server on berth.http and berth.websocket.
--   GET /      -> a small HTML page that chats over a WebSocket to /chat
--   /echo      -> echoes every message, text or binary (fragmented or not)
--   /chat      -> each text message goes to every other /chat client; a
--                 client too far behind is dropped (close 1008)
-- permessage-deflate is offered to clients that ask for it. On shutdown
-- every client is sent close 1001 "going away". The page takes two query
-- arguments for unattended runs (spec/realclients.sh drives it from a
-- headless Chromium): ?say=TEXT sends TEXT once connected, ?ack=1 answers
-- every line it receives with "ack: " and the line.
-- PORT (default 8081, 0 for any free port) and HOST (default 127.0.0.1).
local berth = require "berth"
local http = require "berth.http"
local websocket = require "berth.websocket"

local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>berth chat</title></head>
<body>
<h1>berth chat</h1>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus><button>send</button></form>
<script>
const log = document.getElementById("log");
function show(text) {
  const li = document.createElement("li");
  li.textContent = text;
  log.appendChild(li);
}
const args = new URLSearchParams(location.search);
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat");
ws.onopen = () => {
  document.title = "berth chat: connected";
  if (args.get("say")) { ws.send(args.get("say")); show("me: " + args.get("say")); }
};
ws.onmessage = (e) => {
  show(e.data);
  if (args.get("ack")) ws.send("ack: " + e.data);
};
ws.onclose = (e) => show("(closed " + e.code + ")");
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value) { ws.send(input.value); show("me: " + input.value); input.value = ""; }
};
</script>
</body></html>
]]

local chat = websocket.group("chat")

local function echo(ws)
  for msg, kind in ws:messages() do
    if not ws:send(msg, kind) then return end
  end
end

local function chatter(ws)
  chat:add(ws)
  for msg, kind in ws:messages() do
    if kind == "text" then chat:send(msg, "text", ws) end
  end
end

local routes = { ["/echo"] = echo, ["/chat"] = chatter }

local server = assert(http.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 8081),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  max_output = 4 * 1024 * 1024, -- room to echo a 1 MiB message to a slow reader
  handler = function(req, res)
    local route = routes[req.path]
    if route then
      local ws = websocket.upgrade(req, res, { deflate = true })
      if ws then route(ws) end
      return
    end
    if req.path == "/" and (req.method == "GET" or req.method == "HEAD") then
      return res:header("Content-Type", "text/html; charset=utf-8"):send(PAGE)
    end
    res:status(404):header("Content-Type", "text/plain"):send("Not Found\n")
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()
