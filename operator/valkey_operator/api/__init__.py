"""The ValkeyCluster API: its schema (the CRD), its typed spec, and the status it reports."""
