"""Pure domain: states, value objects, decisions. No I/O, no SQL, no HTTP."""
