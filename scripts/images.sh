#!/usr/bin/env bash
# Builds the container images bounce/collector and bounce/agent with the
# local Docker engine, no registry: the binaries are built with the `dist`
# profile (Cargo.toml: fat LTO, one codegen unit; a smaller executable and
# fewer resident pages, BENCHMARKS.md), linked here as static executables
# (glibc, -C target-feature=+crt-static), stripped, and copied onto an empty
# base (deploy/docker/Dockerfile).
#
#   ./scripts/images.sh                 # build both, tag :VERSION and :latest
#   TAG=dev ./scripts/images.sh         # tag :dev instead of :VERSION
#   PROFILE=release ./scripts/images.sh # the release profile (no LTO: builds faster)
#   PROFILE=dev ./scripts/images.sh     # unoptimized binaries from the debug build (the tests)
#   docker save bounce/collector:latest bounce/agent:latest | gzip > bounce-images.tar.gz
#
# Prints IMAGE=... lines, and the image sizes on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null 2>&1 || { echo "images: no docker here (apt-get install docker.io)" >&2; exit 1; }
docker version >/dev/null 2>&1 || { echo "images: the Docker engine does not answer" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${TAG:-$version}
profile=${PROFILE:-dist}
case $profile in dev) dir=debug ;; *) dir=$profile ;; esac
bin=${CARGO_TARGET_DIR:-target}/$dir
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin" "$ctx/rootfs/etc/bounce" "$ctx/rootfs/tmp" "$ctx/state/bounce"

# Static: +crt-static given to the final link of each binary only (cargo
# rustc), so the libraries of an ordinary build of the profile are reused
# rather than built a second time. The static executable then stands in
# target/<profile> until the next `cargo build` links it again.
for b in bounce-agent bounce-collector; do
  echo "images: linking $b statically ($profile, +crt-static)" >&2
  cargo rustc --profile "$profile" --locked --quiet -p "$b" --bin "$b" -- -C target-feature=+crt-static
  if readelf -d "$bin/$b" | grep -q NEEDED; then
    echo "images: $bin/$b is not static, it needs:" >&2; readelf -d "$bin/$b" | grep NEEDED >&2; exit 1
  fi
  strip -o "$ctx/bin/$b" "$bin/$b"
done

chmod 1777 "$ctx/rootfs/tmp"
# Names for the two ids the images use (ls, ps and the audit log show names).
printf 'root:x:0:0:root:/root:/sbin/nologin\nbounce:x:65532:65532:bounce:/var/lib/bounce:/sbin/nologin\n' \
  > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nbounce:x:65532:\n' > "$ctx/rootfs/etc/group"
# glibc's static lookups read this: files first, then DNS.
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"
cp deploy/docker/Dockerfile "$ctx/Dockerfile"

for image in collector agent; do
  docker build -q --target "$image" -t "bounce/$image:$tag" -t "bounce/$image:latest" \
    --label "org.opencontainers.image.version=$version" "$ctx" >/dev/null
  echo "IMAGE=bounce/$image:$tag"
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^bounce/(collector|agent):$tag " >&2
