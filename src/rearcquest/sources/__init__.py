"""The only code that talks HTTP to the data sources (BLS, DataUSA)."""
