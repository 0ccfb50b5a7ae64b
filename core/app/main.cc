// The fcvm command: parses nothing itself, hands argv to the CLI and maps failure to an
// exit code.
#include <sys/stat.h>

#include "cli/cli.h"

int main(int argc, char** argv) {
  // Guest RAM, consoles, images and state are private to the user running fcvm; every child
  // (QEMU, skopeo, mksquashfs, ...) inherits this, so what they create is private too.
  ::umask(077);
  return fcvm::cli::run(argc, argv);
}
