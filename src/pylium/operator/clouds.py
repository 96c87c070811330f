"""L5: the cloud IPAM controller of the operator's ``ipam`` mode, built from its settings and
the environment (there is no instance metadata service to ask).

- ``eni``: EC2 in ``$AWS_REGION`` (or ``$AWS_DEFAULT_REGION``) at ``ec2-api-endpoint`` if
  set, with the usual AWS credential chain.
- ``azure``: ARM for ``azure-subscription-id``/``azure-resource-group`` (both required),
  authenticated as ``azure-user-assigned-identity-id`` through the instance metadata
  service, or with ``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``.
  ``PYLIUM_AZURE_ARM_ENDPOINT``/``PYLIUM_AZURE_IMDS_ENDPOINT``/``PYLIUM_AZURE_AAD_ENDPOINT``
  point it elsewhere (a sovereign cloud, a test server).
- ``alibabacloud``: ECS and VPC in ``$ALIBABA_CLOUD_REGION_ID`` with
  ``ALIBABA_CLOUD_ACCESS_KEY_ID``/``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, limited to
  ``alibaba-cloud-vpc-id``; ``PYLIUM_ALIBABA_CLOUD_ECS_ENDPOINT``/``..._VPC_ENDPOINT``
  override the regional endpoints.

Every client gets ``limit-ipam-api-qps``/``limit-ipam-api-burst``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pylium.adapters.alibabacloud import AlibabaCloudAPI
from pylium.adapters.azure import AAD, IMDS, ARMClient
from pylium.adapters.ec2 import EC2API
from pylium.adapters.store.api import Store
from pylium.base.errors import ConfigError
from pylium.core.ipam.cloud import azure
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.operator.alibabacloud_ipam import AlibabaIPAMController
from pylium.operator.azure_ipam import AzureIPAMController
from pylium.operator.cloud_ipam import CloudIPAMController
from pylium.operator.eni import ENIController


def _need(env: Mapping[str, str], name: str, mode: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError("ipam", f"{mode} IPAM needs {name} in the operator's environment")
    return value


def eni_controller(
    store: Store, settings: OperatorSettings, env: Mapping[str, str] = os.environ
) -> ENIController:
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    if not region:
        raise ConfigError("ipam", "eni IPAM needs the EC2 region: set AWS_REGION")
    api = EC2API.connect(
        region=region,
        endpoint_url=settings.ec2_api_endpoint,
        qps=settings.limit_ipam_api_qps,
        burst=settings.limit_ipam_api_burst,
        max_results=settings.aws_max_results_per_call,
    )
    return ENIController(store, api, settings)


def azure_controller(
    store: Store, settings: OperatorSettings, env: Mapping[str, str] = os.environ
) -> AzureIPAMController:
    for key, value in (
        ("azure-subscription-id", settings.azure_subscription_id),
        ("azure-resource-group", settings.azure_resource_group),
    ):
        if not value:
            raise ConfigError(key, "must be set with ipam azure (Helm azure.* values)")
    api = ARMClient(
        subscription_id=settings.azure_subscription_id,
        resource_group=settings.azure_resource_group,
        user_assigned_identity_id=settings.azure_user_assigned_identity_id,
        tenant_id=env.get("AZURE_TENANT_ID", ""),
        client_id=env.get("AZURE_CLIENT_ID", ""),
        client_secret=env.get("AZURE_CLIENT_SECRET", ""),
        endpoint=env.get("PYLIUM_AZURE_ARM_ENDPOINT") or azure.RESOURCE_MANAGER,
        imds_endpoint=env.get("PYLIUM_AZURE_IMDS_ENDPOINT") or IMDS,
        aad_endpoint=env.get("PYLIUM_AZURE_AAD_ENDPOINT") or AAD,
        qps=settings.limit_ipam_api_qps,
        burst=settings.limit_ipam_api_burst,
    )
    return AzureIPAMController(store, api, settings)


def alibaba_controller(
    store: Store, settings: OperatorSettings, env: Mapping[str, str] = os.environ
) -> AlibabaIPAMController:
    mode = IPAMMode.ALIBABACLOUD.value
    api = AlibabaCloudAPI(
        region=_need(env, "ALIBABA_CLOUD_REGION_ID", mode),
        access_key_id=_need(env, "ALIBABA_CLOUD_ACCESS_KEY_ID", mode),
        access_key_secret=_need(env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET", mode),
        vpc_id=settings.alibaba_cloud_vpc_id,
        ecs_endpoint=env.get("PYLIUM_ALIBABA_CLOUD_ECS_ENDPOINT", ""),
        vpc_endpoint=env.get("PYLIUM_ALIBABA_CLOUD_VPC_ENDPOINT", ""),
        qps=settings.limit_ipam_api_qps,
        burst=settings.limit_ipam_api_burst,
    )
    return AlibabaIPAMController(store, api, settings)


def cloud_controller(
    store: Store, settings: OperatorSettings, env: Mapping[str, str] = os.environ
) -> CloudIPAMController | None:
    """The controller of a cloud ``ipam`` mode; None for the other modes."""
    if settings.ipam is IPAMMode.ENI:
        return eni_controller(store, settings, env)
    if settings.ipam is IPAMMode.AZURE:
        return azure_controller(store, settings, env)
    if settings.ipam is IPAMMode.ALIBABACLOUD:
        return alibaba_controller(store, settings, env)
    return None
