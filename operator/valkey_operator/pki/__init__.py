"""Certificates, pure: keys, CA and leaf issuance, inspection, validation and renewal decisions."""
