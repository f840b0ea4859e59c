-- luarocks make berth-dev-1.rockspec  (from a checkout; builds with CMake)
package = "berth"
version = "dev-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Lua 5.4 scriptable socket server host on libev",
  detailed = [[
    A C core on libev owns the event loop, listening sockets, accept,
    buffering and socket I/O; servers are written in Lua as coroutines that
    read and write as if blocking, or as callbacks on events.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBEV = { header = "ev.h", library = "ev" },
  ZLIB = { header = "zlib.h", library = "z" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    BERTH_LUA_CMOD_DIR = "$(LIBDIR)",
    BERTH_LUA_DIR = "$(LUADIR)",
    BERTH_INSTALL_LUA_ONLY = "ON",
  },
}
