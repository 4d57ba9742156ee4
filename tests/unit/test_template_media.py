"""template.yaml's media resources: the bucket is private, encrypted, TLS only, not versioned and expires
its objects after MediaRetentionDays; the media function reads its queue with partial batch failures,
agrees with the queue on the receives, and may touch only the bucket's media objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.template import load_template

TEMPLATE: dict[str, Any] = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
OBJECTS = {"Fn::Sub": "${MediaBucket.Arn}/media/*"}


def test_the_bucket_is_encrypted_private_owner_enforced_and_unversioned() -> None:
    bucket = RESOURCES["MediaBucket"]
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "VersioningConfiguration" not in props  # an erasure's delete is final
    assert bucket["DeletionPolicy"] == "Retain"


def test_objects_expire_after_the_retention_parameter_and_uploads_are_cleaned_up() -> None:
    rules = {r["Id"]: r for r in RESOURCES["MediaBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireMedia"]["ExpirationInDays"] == {"Ref": "MediaRetentionDays"}
    assert TEMPLATE["Parameters"]["MediaRetentionDays"]["Default"] == 90
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1


def test_the_bucket_policy_refuses_every_request_without_tls() -> None:
    policy = RESOURCES["MediaBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "MediaBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["MediaBucket", "Arn"]},
        {"Fn::Sub": "${MediaBucket.Arn}/*"},
    ]


def test_the_media_function_reads_its_queue_with_partial_failures_and_agrees_on_receives() -> None:
    function = RESOURCES["MediaFunction"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["MediaQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # A backlog of attachments waits on the queue: it never takes the webhooks' concurrency.
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MediaConcurrency"}}
    queue = RESOURCES["MediaQueue"]["Properties"]
    assert function["Environment"]["Variables"]["MEDIA_MAX_RECEIVES"] == str(
        queue["RedrivePolicy"]["maxReceiveCount"]
    )
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["MediaDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]  # AWS's advice for SQS event sources
    assert queue["MessageRetentionPeriod"] == 7 * 24 * 3600  # Meta's webhook media ids expire after 7 days


def test_only_the_bucket_s_media_objects_are_granted() -> None:
    for name in ("MediaFunction", "ContactsAndMessagesApiFunction"):
        for statement in RESOURCES[name]["Properties"]["Policies"][0]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            s3 = [a for a in actions if a.startswith("s3:")]
            if s3 and s3 != ["s3:ListBucket"]:
                assert statement["Resource"] == OBJECTS, (name, statement["Sid"])
    ingest = RESOURCES["IngestFunction"]["Properties"]
    assert ingest["Environment"]["Variables"]["MEDIA_QUEUE_URL"] == {"Ref": "MediaQueue"}
