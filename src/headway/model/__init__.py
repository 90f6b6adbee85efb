"""What a service and a cloud are, as data: the spec and its parts, the SSH cloud config, the
states and their transitions, the error types that decide exit codes. Pure: imports nothing
of headway's other layers and nothing that does I/O beyond reading the YAML it is handed."""
