/* fcvm-uffd-shim: an LD_PRELOAD library that gives a QEMU clone Firecracker's UFFD memory.
 *
 * QEMU 7.2 maps a memory-backend-ram in two steps: a PROT_NONE reservation, then one
 * MAP_FIXED anonymous private mapping of exactly the RAM size. This library watches mmap
 * for that second mapping (its size comes in FCVM_UFFD_MEM_SIZE) and, right after it,
 * does what Firecracker does on a Uffd snapshot load: creates a userfaultfd
 * (/dev/userfaultfd + USERFAULTFD_IOC_NEW, else the syscall) with
 * UFFD_FEATURE_EVENT_REMOVE, registers the range in MISSING mode, connects to the page
 * server at FCVM_UFFD_SOCKET and sends its one message: a JSON array with the one region
 * and the uffd as SCM_RIGHTS. The uffd and the socket stay open for QEMU's life.
 *
 * Any failure aborts QEMU: a clone without its memory source would run on zeroed RAM and
 * silently boot afresh. mmap is forwarded with the raw syscall (no dlsym, which may itself
 * allocate and recurse into mmap). Written in C so it carries no C++ runtime into QEMU. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

static int g_done;

static void fail(const char* what) {
  fprintf(stderr, "fcvm-uffd-shim: %s: %s; aborting rather than running on empty memory\n", what,
          strerror(errno));
  abort();
}

static int create_uffd(void) {
  int uffd = -1;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    uffd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    close(dev);
  }
  if (uffd < 0) uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) fail("userfaultfd");
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) fail("UFFDIO_API");
  return uffd;
}

static void hand_to_page_server(void* addr, size_t len, const char* socket_path) {
  const int uffd = create_uffd();
  struct uffdio_register reg = {.range = {.start = (uintptr_t)addr, .len = len},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) fail("UFFDIO_REGISTER guest RAM");

  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof sa.sun_path) {
    errno = ENAMETOOLONG;
    fail("FCVM_UFFD_SOCKET");
  }
  strcpy(sa.sun_path, socket_path);
  const int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0 || connect(sock, (struct sockaddr*)&sa, sizeof sa) != 0) fail("connect to the page server");

  const long page = sysconf(_SC_PAGESIZE);
  char json[256];
  const int n = snprintf(json, sizeof json,
                         "[{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":0,"
                         "\"page_size\":%ld,\"page_size_kib\":%ld}]",
                         (unsigned long long)(uintptr_t)addr, (unsigned long long)len, page, page);
  struct iovec iov = {.iov_base = json, .iov_len = (size_t)n};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) != n) fail("send the handshake");
  /* uffd and sock stay open: the server sees QEMU's exit as EOF / process exit. */
}

SHIM_EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
  if (r < 0 && r > -4096) {
    errno = (int)-r;
    return MAP_FAILED;
  }
  void* mapped = (void*)r;
  if (!g_done && (flags & MAP_FIXED) && (flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE)) {
    const char* size = getenv("FCVM_UFFD_MEM_SIZE");
    const char* socket_path = getenv("FCVM_UFFD_SOCKET");
    if (size && socket_path && strtoull(size, NULL, 10) == len) {
      g_done = 1;
      hand_to_page_server(mapped, len, socket_path);
    }
  }
  return mapped;
}

SHIM_EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  return mmap(addr, len, prot, flags, fd, off);
}
