"""What a service is, as data: the spec and its parts, the states and their transitions,
the error types that decide exit codes. Pure: imports nothing of headway's other layers and
nothing that does I/O beyond reading the YAML it is handed."""
