# Sourced by the harness scripts: `detached CMD...` starts a daemon in its own
# session that keeps no descriptor it inherited but stdin/stdout/stderr (the
# caller redirects those). A daemon outlives the script and the test that
# started it; an inherited descriptor would keep, e.g., a caller's
# `flock FILE cmd` lock held for as long as the daemon runs.
detached() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec setsid "$@"
  ) &
}
