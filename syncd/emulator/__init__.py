"""A local emulator of Box's API (`syncd emulator`), independent of syncd's Box client.

docs/EMULATOR.md says, endpoint by endpoint, what the live service does and what
the emulator does.

Modules, top down:
  command    CLI options (`add_arguments`) and `run`; light imports only
  app        routing, and what runs before every handler (faults, auth, rate limits); admin API
  content    upload endpoints: direct uploads, preflight, upload sessions, parts
  plan       the upload-session plan: which parts of a new version are already held
  commit     committing a session: uploaded and reused parts, digests, the new version
  downloads  GET .../content as a 302 to a signed, expiring download URL; ranged bytes
  items      folders, file metadata, versions, users/me
  auth       bearer tokens and the OAuth grants (code, refresh, client credentials, JWT)
  server     threaded HTTP/1.1 server: keep-alive, TCP_NODELAY, TLS, streamed bodies, shaping, drops
  tls        server certificates: given files, or a throwaway CA made on the spot
  multipart  incremental multipart/form-data parser
  store      SQLite metadata + content files under --data; survives restarts
  shapes     Box JSON representations
  faults     fault knobs, rate-limit windows, request statistics
  context    what handlers share; part-size table; compatibility switches
  errors, names, clock   Box errors, item-name rules, the movable clock
  harness    start one in a subprocess from a test suite or benchmark (not imported by the rest)
"""
