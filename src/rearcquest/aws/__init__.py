"""The AWS seams: S3 (with its multipart writer), SQS, Glue and the botocore session. The only
code that imports boto3 or botocore.
"""
