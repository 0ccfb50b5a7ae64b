// The fcvm command: parses nothing itself, hands argv to the CLI and maps failure to an
// exit code.
#include "cli/cli.h"

int main(int argc, char** argv) { return fcvm::cli::run(argc, argv); }
