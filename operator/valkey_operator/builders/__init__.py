"""spec (+ minted material) -> the Kubernetes objects a ValkeyCluster owns, as plain dicts (pure)."""
