"""The service runtime: what runs while `syncd run` runs.

  daemon          wiring, lifecycle, signals, reload (builds everything below and the pipeline)
  box_connection  the Box client, uploader and folder tree built from the configuration
  health          named probes behind /healthz and the systemd watchdog
  metrics         Prometheus metrics (own registry)
  metrics_server  the HTTP server for /metrics and /healthz
  notify          systemd sd_notify: READY, STATUS, RELOADING, STOPPING, WATCHDOG pings
  alerts          alert-worthy conditions from the journal (logged once by the daemon,
                  shown by `syncd status`)

It imports the pipeline, the journal, the Box client, config and logs; never the
commands or the CLI.
"""
