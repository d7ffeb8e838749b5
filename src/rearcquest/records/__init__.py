"""What rq keeps in the bucket beside the files, shared by the wings: the sync state, the
lease and the release log.
"""
