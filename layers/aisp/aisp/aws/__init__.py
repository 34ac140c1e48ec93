"""The AWS adapters but DynamoDB's (``aisp.dal``): KMS (``kms``: envelope encryption of the bank tokens, the
cursor key), Secrets Manager (``secrets``: the TPP's eIDAS credentials), EventBridge and SQS (``messaging``), and
CloudWatch Logs (``logs``: the audit trail's keeper). Built by ``aisp.wiring``; the use cases never import them.
"""
