"""valkey.conf and the pod's start and probe scripts, rendered from the spec (pure)."""
