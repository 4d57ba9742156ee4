"""Bench probe: the floor for any function that queues: import boto3 and build an SQS client."""

import boto3

boto3.client("sqs", region_name="us-east-1")
