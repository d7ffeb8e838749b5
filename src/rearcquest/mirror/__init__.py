"""The mirror wing: BLS directories and the DataUSA answer into a bucket (plan, apply,
surveys, the population fetch). It never imports the data or the index wing.
"""
