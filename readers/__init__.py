"""Reading what arrives: finding a district's landing files and reading each format
(`landing`: CSV by Arrow or Python's csv, gzip, Parquet, JSON lines), decrypting `.gpg`
files with the real gpg (`decrypt`), CLIx school-server trees (`clix`), xAPI and Caliper
JSON and OneRoster bundles (`standards`). Remote fetches go here too. Imports only
`analytics/` (row validation and mapping rules).
"""
