"""Storage: connections (`database`: the URL's forms, the engine with the schema created,
SQLite's transactions, snapshots) and the write primitives every job shares (`frames`: COPY
and bulk inserts, reads into DataFrames, upserts, a district's rows replaced at once; `ddl`:
a district table's columns added and dropped). The schema itself is `models/`.
Imports only `models/`.
"""
