"""Operations on vaults, keystores, templates and keys: the one implementation CLI and API share.

Each change loads records, asks the pure rules in ``keyorch.domain`` and writes the result
together with its audit record in one transaction. A refusal changes nothing and is itself
audited (outcome ``refused``, with the reason).
"""
