#!/bin/sh
# Builds the example image as an OCI layout at OUTDIR, tagged "hello" (reference
# "oci:OUTDIR:hello"), offline, from the host's static busybox.
#
# The image runs /hello.sh, which greets with the guest's kernel version, and carries
# busybox httpd with /www/index.html for network tests ("httpd -f -p 80 -h /www").
#
# OUTDIR belongs to this script: it is replaced as a whole, by renames, so a reader never
# sees a half-built layout. Timestamps are fixed, so rebuilding gives the same digest, and
# an OUTDIR that already holds that image is left untouched.
# Needs umoci; runs rootless when not root. Quiet unless something fails.
set -eu

usage() {
  echo "usage: $0 OUTDIR" >&2
  exit 2
}
[ $# -eq 1 ] || usage
out=${1%/}
[ -n "$out" ] || usage

busybox=${BUSYBOX:-/bin/busybox}
# Fixed time for files, config and history: reproducible digests.
epoch=1704067200
created=2024-01-01T00:00:00Z

die() {
  echo "examples/hello/build.sh: $*" >&2
  exit 1
}

command -v umoci >/dev/null 2>&1 || die "umoci not found; install it with 'apt-get install umoci'"
[ -x "$busybox" ] || die "$busybox not found; install it with 'apt-get install busybox-static'"
if [ -e "$out" ] && [ ! -f "$out/oci-layout" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  die "$out exists and is not an OCI layout; refusing to replace it"
fi

parent=$(dirname "$out")
mkdir -p "$parent"
# Build beside OUTDIR so the final rename stays on one filesystem.
work=$(mktemp -d "$parent/.hello-build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

rootless=
[ "$(id -u)" -eq 0 ] || rootless=--rootless

layout=$work/layout
bundle=$work/bundle
umoci init --layout "$layout"
umoci new --image "$layout:hello"
umoci unpack $rootless --image "$layout:hello" "$bundle" >/dev/null
root=$bundle/rootfs

# Filesystem skeleton. /proc, /sys, /dev and /tmp are mount points for the guest agent.
for d in bin sbin usr/bin usr/sbin etc root home/app www proc sys dev tmp run var/log; do
  mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
# A user with a supplementary group, for -u NAME (tests/e2e/podman_diff_test.cc).
chown 1000:1000 "$root/home/app" 2>/dev/null || true

cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# One relative symlink per applet, at the path busybox itself would install it.
"$busybox" --list-full | while read -r applet; do
  case $applet in
    bin/busybox) continue ;;
    bin/*) target=busybox ;;
    usr/*/*) target=../../bin/busybox ;;
    */*) target=../bin/busybox ;;
    *) continue ;;
  esac
  ln -sf "$target" "$root/$applet"
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
GROUP
echo hello >"$root/etc/hostname"

cat >"$root/hello.sh" <<'HELLO'
#!/bin/sh
echo "Hello from fcvm! This container runs on Linux $(uname -r)."
HELLO
chmod 0755 "$root/hello.sh"

cat >"$root/www/index.html" <<'HTML'
<!doctype html>
<html>
<head><title>fcvm hello</title></head>
<body><p>Hello from fcvm!</p></body>
</html>
HTML

find "$root" -exec touch -h -d "@$epoch" {} +

umoci repack --image "$layout:hello" \
  --history.created "$created" \
  --history.created_by "examples/hello/build.sh" \
  "$bundle"
umoci config --image "$layout:hello" \
  --created "$created" \
  --author fcvm \
  --architecture amd64 --os linux \
  --config.cmd /bin/sh --config.cmd /hello.sh \
  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env GREETING=hello \
  --config.workingdir / \
  --config.exposedports 80/tcp \
  --config.label org.opencontainers.image.title=hello \
  --config.label "dev.fcvm.example.httpd=httpd -f -p 80 -h /www" \
  --history.created "$created" \
  --history.created_by "examples/hello/build.sh (config)"
umoci gc --layout "$layout"

# The build is reproducible: an existing layout with the same index is the same image, and
# is left alone so concurrent readers never see it vanish. Otherwise swap the new one in.
if [ -f "$out/index.json" ] && cmp -s "$out/index.json" "$layout/index.json"; then
  exit 0
fi
[ ! -e "$out" ] || mv "$out" "$work/old"
mv "$layout" "$out"
