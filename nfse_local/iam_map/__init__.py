"""The IAM map: every AWS call the code makes is granted to the role that makes it, and nothing
more is granted without a written reason. `python -m nfse_local.iam_map` prints the map (the
table of docs/security.md) or fails with the gaps; tests/unit/test_iam_map.py checks it.

How the map is built:

1. Calls (`sources`, `reach`). Each component's Python sources are parsed (never imported).
   From the entry module (the handler named by the template, `adapters_service` for the worker)
   the reachable code is found by rapid type analysis: a method counts only when its name is
   called from reached code AND its class is constructed in reached code. Every call
   `x.<op>(...)` whose name is a boto3 operation of a service the code builds clients for is an
   AWS call; botocore's own service models turn `<op>` into the IAM action (`put_item` ->
   `dynamodb:PutItem`), with the few exceptions in ACTION_EXCEPTIONS (`head_object` is
   authorized as `s3:GetObject`).
2. Resources (`needs`). A class talks to what it was constructed with: the `settings.<field>`
   arguments at its construction sites (a class built without any inherits the resource of the
   class that builds it). nfse_core/config.py names each field's environment variable, and the
   template sets that variable to a `!Ref`/`!GetAtt` of the resource (or a parameter, for the
   certificate secrets' prefix). Some calls imply others (IMPLIED: the Data API reads the DB
   secret as the caller), and every call on a KMS-encrypted resource needs the key
   (kms:Decrypt; writes also kms:GenerateDataKey) - SAM policy templates never grant it.
3. Grants (`grants`). SAM policy templates are resolved with the actions of nfse_local.iam's
   table of SAM's policy_templates.json; inline statements are read as written.
4. Rules (`grants`, `project.gaps`). Nothing missing. Every inline action is used by the code,
   and every SAM policy template grants at least one used action, unless the statement's Sid
   has a reason in the owning resource's `Metadata.IamReasons`. An Allow on `Resource: "*"` or
   of `Action: "*"` / `"<service>:*"` needs the same kind of reason. Managed policies need a
   reason in MANAGED_POLICY_REASONS.
"""
