"""Pure computations on DataFrames: school years, bands, type codes, the student table,
usage rollups, most used software, recommendations, landing-row validation. Imports only
the standard library, numpy, pandas and scikit-learn: no database, files, settings or clock.
"""
