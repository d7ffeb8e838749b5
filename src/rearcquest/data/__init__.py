"""The data wing: reports, BLS text, Parquet tables, SQL, Athena and past releases. It never
imports the mirror or the index wing; it reads what the mirror writes through rearcquest.records.
"""
