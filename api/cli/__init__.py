"""The `smsq` command line."""
