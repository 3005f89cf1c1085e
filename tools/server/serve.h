// qtf serve: a local HTTP server (OpenAI-compatible completions and chat completions, /health,
// /metrics) over one shared model. A tool like the CLI: the engine core knows no sockets.
#pragma once

namespace qtf::cli {
int cmd_serve(int argc, char** argv);
}
