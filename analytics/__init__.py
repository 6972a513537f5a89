"""Pure computations on DataFrames: school years, bands, type codes, the student table,
usage rollups, most used software, recommendations, landing-row validation, and the mapping
rules of outside formats (`clix`, `standards` for xAPI and Caliper, `oneroster`); and outside
text made inert where people read it (`printable`). Imports only the standard library,
numpy, pandas and scikit-learn: no database, files, settings or clock.
"""
