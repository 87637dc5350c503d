"""Harnesses for syncd's own tests and benchmarks, and for anyone's that need a real daemon.

  daemon_process  run `python -m syncd run` as a child process, write its config,
                  read its JSON log events, run `syncd status/history --json`
  postgres        a throwaway PostgreSQL cluster (initdb, a free port, run unprivileged,
                  databases and roles, crash and restart, ending one client's sessions)
  tcp_proxy       a TCP link a test can blackhole, reset and heal: one host cut off
                  PostgreSQL while another still reaches it

The emulator's harness is part of the emulator (`syncd.emulator.harness`). This
package may import anything of syncd; nothing in syncd imports it.
"""
