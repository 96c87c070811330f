"""L2: cloud IPAM, pure: the watermark/allocation/release state machine every provider
(AWS ENI, Azure, AlibabaCloud) shares (:mod:`.plan`), and the providers' request shapes and
limits (:mod:`.azure`, :mod:`.alibabacloud`). The operator's controller
(:mod:`pylium.operator.cloud_ipam`) runs it against a provider's API.
"""
