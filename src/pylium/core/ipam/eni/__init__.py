"""L2: AWS ENI IPAM, pure: instance limits, watermarks, allocation and release plans.

The operator (:mod:`pylium.operator.eni`) feeds these functions a node's CiliumNode fields and
the EC2 state it cached, and executes the plans they return against EC2. Nothing here does
I/O or reads a clock: times are passed in.
"""
