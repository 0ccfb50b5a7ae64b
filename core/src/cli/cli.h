// The fcvm command line: global options, the command table and dispatch.
#pragma once

namespace fcvm::cli {

// Runs fcvm with the process's arguments and returns the exit code. Never throws: every
// error becomes a one-line message on stderr and a non-zero code.
int run(int argc, char** argv);

}  // namespace fcvm::cli
