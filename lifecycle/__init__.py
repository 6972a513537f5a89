"""A district's lifecycle: onboarding with its dry run, offboarding and dropping
(`onboarding`), and the demo installation (`demo`: a generated landing folder and its
districts.yaml). Sits just below the command line: may import every package but `trigger`.
"""
