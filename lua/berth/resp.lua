--- berth.resp: the Redis protocol (RESP2) for servers.
--
--     local resp = require "berth.resp"
--     local args, code, extra = resp.read(sock [, timeout])
--     resp.send(sock, reply...)
--
-- resp.read parses one command in C from the socket's buffer (src/resp.c:
-- Redis's strict length syntax, its limits and error texts) and returns its
-- arguments as a list of strings; an empty list is an empty command ("*0",
-- a blank inline line: no reply is due). A malformed or oversized command
-- returns nil, "protocol" and Redis's error text: reply
-- resp.error(text) and close, as redis-server does. The socket's max_input
-- caps one command and one argument; otherwise nil, code, unread bytes as
-- sock:read. resp.send queues the reply strings: the replies to a
-- pipelined batch leave together, when the next read has to wait.
-- The helpers below format replies.
local core = require "berth.core"

local C = core.resp
local M = { read = C.read, send = C.send }

M.OK, M.NIL, M.PONG = "+OK\r\n", "$-1\r\n", "+PONG\r\n"

function M.int(n) return (":%d\r\n"):format(n) end
function M.bulk(s) return ("$%d\r\n%s\r\n"):format(#s, s) end
-- An error reply; like Redis, CR and LF in the message become spaces.
function M.error(msg) return "-ERR " .. msg:gsub("[\r\n]", " ") .. "\r\n" end
-- An array of bulk strings; false is a nil bulk.
function M.array(items)
  local out = { ("*%d\r\n"):format(#items) }
  for i, v in ipairs(items) do out[i + 1] = v == false and M.NIL or M.bulk(v) end
  return table.concat(out)
end

return M
