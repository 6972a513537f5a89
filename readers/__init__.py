"""Reading what arrives: finding a district's landing files and reading each format
(`landing`: CSV by Arrow or Python's csv, gzip, Parquet, JSON lines), decrypting `.gpg`
files with the real gpg (`decrypt`). Native school-server trees, event and roster
standards and remote fetches go here too. Imports only `analytics/` (row validation).
"""
