#!/usr/bin/python3
"""spec/clients/ws_client.py MODE PORT -- drives examples/websocket.lua with
the Python `websockets` library (Debian python3-websockets), for
spec/realclients.sh. Prints one line per check, "ok NAME" or "not ok NAME:
why"; every wait is bounded.

  checks PORT   echo (text, binary, fragmented), permessage-deflate, ping,
                chat between two clients, the closing handshake
  away PORT     connects, prints "ready", and reports the close code the
                server sends when it shuts down (1001 expected)
  browser PORT  waits on /chat for "hello from chromium", answers, and
                expects the page's "ack: ..." back
"""
import asyncio
import sys

import websockets

T = 10  # seconds any one step may take


def report(name, ok, why=""):
    print(("ok " if ok else "not ok ") + name + ("" if ok else ": " + why), flush=True)


async def step(aw):
    return await asyncio.wait_for(aw, T)


async def check(name, coro):
    try:
        why = await coro
        report(name, why is None, str(why))
    except Exception as e:  # any failure is a failed check, not a crash
        report(name, False, repr(e))


async def echo_plain(url):
    async with websockets.connect(url + "/echo", compression=None) as ws:
        await ws.send("hello, berth")
        if await step(ws.recv()) != "hello, berth":
            return "text"
        await ws.send(b"\x00\x01\xfe\xff")
        if await step(ws.recv()) != b"\x00\x01\xfe\xff":
            return "binary"
        await ws.send(["frag", "men", "ted ", "\u00e9t\u00e9"])  # fragmented
        if await step(ws.recv()) != "fragmented \u00e9t\u00e9":
            return "fragmented"
        big = bytes(range(256)) * 4096  # 1 MiB
        await ws.send(big)
        if await step(ws.recv()) != big:
            return "1 MiB binary"


async def echo_deflate(url):
    async with websockets.connect(url + "/echo") as ws:  # deflate is offered
        if not ws.extensions:
            return "permessage-deflate not negotiated"
        for i in range(3):
            text = ("compress me %d " % i) * 1000
            await ws.send(text)
            if await step(ws.recv()) != text:
                return "message %d" % i


async def ping(url):
    async with websockets.connect(url + "/echo") as ws:
        await step(await ws.ping(b"are you there"))


async def chat(url):
    async with websockets.connect(url + "/chat") as a, websockets.connect(url + "/chat") as b:
        await asyncio.sleep(0.2)  # both joined
        await a.send("hi from a")
        if await step(b.recv()) != "hi from a":
            return "b did not get a's line"
        await b.send("hi from b")
        if await step(a.recv()) != "hi from b":
            return "a did not get b's line"
        try:
            extra = await asyncio.wait_for(a.recv(), 0.2)
            return "a got its own line back: %r" % extra
        except asyncio.TimeoutError:
            pass


async def closing(url):
    ws = await websockets.connect(url + "/echo")
    await ws.close(code=4001, reason="done")
    if ws.close_code != 4001:
        return "close code %s" % ws.close_code


async def checks(port):
    url = "ws://127.0.0.1:%d" % port
    await check("python websockets: echo text, binary, fragmented, 1 MiB", echo_plain(url))
    await check("python websockets: permessage-deflate negotiated and echoed", echo_deflate(url))
    await check("python websockets: ping answered with pong", ping(url))
    await check("python websockets: /chat between two clients", chat(url))
    await check("python websockets: closing handshake (4001)", closing(url))


async def away(port):
    async with websockets.connect("ws://127.0.0.1:%d/echo" % port) as ws:
        print("ready", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), T)
        except websockets.ConnectionClosed:
            pass
        code = ws.close_code
        report("python websockets: going away on shutdown (close 1001)", code == 1001,
               "close code %s" % code)


async def browser(port):
    async with websockets.connect("ws://127.0.0.1:%d/chat" % port) as ws:
        print("ready", flush=True)
        got = await asyncio.wait_for(ws.recv(), 30)
        if got != "hello from chromium":
            return report("chromium: page sends on /chat", False, repr(got))
        report("chromium: page sends on /chat", True)
        await ws.send("hi browser")
        got = await asyncio.wait_for(ws.recv(), T)
        report("chromium: page receives and answers", got == "ack: hi browser", repr(got))


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    try:
        asyncio.run({"checks": checks, "away": away, "browser": browser}[mode](port))
    except Exception as e:
        report("python websockets " + mode, False, repr(e))


main()
