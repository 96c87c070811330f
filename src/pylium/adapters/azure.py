"""L3: the Azure Resource Manager REST API as the Azure IPAM operator uses it (``requests``,
no Azure SDK), rate-limited and retried.

Authentication is a bearer token for ``https://management.azure.com/``: from the instance
metadata service's managed identity endpoint (the user-assigned identity
``azure-user-assigned-identity-id`` as ``client_id``, else the system-assigned one), or with
a client secret from Azure AD (``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``,
what the chart's ``azure.tenantID``/``clientID``/``clientSecret`` become). Tokens are reused
until five minutes before ``expires_on``. Lists follow ``nextLink``; PUTs that answer with
``Azure-AsyncOperation`` are polled until the operation succeeds or fails. HTTP 429 (and
``Retry-After``) counts as throttling: retried with backoff behind the shared token bucket,
counted as ``cilium_operator_azure_api_*``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import requests

from pylium.adapters.cloudapi import DEFAULT_BURST, DEFAULT_QPS, CloudAPIError, RateLimitedClient
from pylium.core.ipam.cloud import azure

IMDS = "http://169.254.169.254"
AAD = "https://login.microsoftonline.com"
TOKEN_MARGIN = 300.0
MAX_POLLS = 60


class AzureError(CloudAPIError):
    """An ARM call failed (after retries when it was throttled)."""

    api = "Azure"


class ARMClient(RateLimitedClient):
    """GET/PUT against ARM with a managed-identity or client-secret token."""

    throttle_codes = frozenset({"TooManyRequests", "429"})

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        user_assigned_identity_id: str = "",
        tenant_id: str = "",
        client_id: str = "",
        client_secret: str = "",
        endpoint: str = azure.RESOURCE_MANAGER,
        imds_endpoint: str = IMDS,
        aad_endpoint: str = AAD,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(api="azure", qps=qps, burst=burst, sleep=sleep)
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.identity = user_assigned_identity_id
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.endpoint = endpoint.rstrip("/")
        self.imds = imds_endpoint.rstrip("/")
        self.aad = aad_endpoint.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self._token = ""
        self._expires = 0.0

    @property
    def group_path(self) -> str:
        return azure.resource_group_path(self.subscription_id, self.resource_group)

    # -- authentication -----------------------------------------------------------------------

    def token(self) -> str:
        if self._token and time.time() < self._expires - TOKEN_MARGIN:
            return self._token
        resource = azure.RESOURCE_MANAGER + "/"
        try:
            if self.client_secret:
                response = self.session.post(
                    f"{self.aad}/{self.tenant_id}/oauth2/v2.0/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "scope": resource + ".default",
                    },
                    timeout=self.timeout,
                )
            else:
                query = {"api-version": "2018-02-01", "resource": resource}
                if self.identity:
                    query["client_id"] = self.identity
                response = self.session.get(
                    f"{self.imds}/metadata/identity/oauth2/token?{urlencode(query)}",
                    headers={"Metadata": "true"},
                    timeout=self.timeout,
                )
        except requests.RequestException as err:
            raise AzureError("token", "ConnectionError", str(err)) from err
        if response.status_code != 200:
            raise AzureError("token", str(response.status_code), response.text[:300])
        body = response.json()
        self._token = str(body["access_token"])
        expires = body.get("expires_on") or (time.time() + float(body.get("expires_in") or 0))
        self._expires = float(expires)
        return self._token

    # -- calls ----------------------------------------------------------------------------------

    def request(
        self, operation: str, method: str, url: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One ARM call (``url`` absolute, or a path under the endpoint), rate-limited,
        retried when throttled; PUTs are followed to their asynchronous operation's end."""
        full = url if url.startswith("http") else self.endpoint + url

        def attempt() -> requests.Response:
            try:
                response = self.session.request(
                    method,
                    full,
                    json=body,
                    headers={"Authorization": f"Bearer {self.token()}"},
                    timeout=self.timeout,
                )
            except requests.RequestException as err:
                raise AzureError(operation, "ConnectionError", str(err)) from err
            if response.status_code >= 400:
                code, message = str(response.status_code), response.text[:300]
                try:
                    error = response.json().get("error") or {}
                    code = str(error.get("code") or code)
                    message = str(error.get("message") or message)
                except ValueError:
                    pass
                if response.status_code == 429:
                    code = "TooManyRequests"
                raise AzureError(operation, code, message)
            return response

        response = self._limited(operation, attempt)
        result: dict[str, Any] = response.json() if response.content else {}
        poll = response.headers.get("Azure-AsyncOperation")
        if method == "PUT" and poll:
            self._wait(operation, poll, response.headers.get("Retry-After"))
        return result

    def _wait(self, operation: str, url: str, retry_after: str | None) -> None:
        for _ in range(MAX_POLLS):
            status = self.request(f"{operation}/poll", "GET", url)
            state = str(status.get("status") or "")
            if state == "Succeeded":
                return
            if state in ("Failed", "Canceled"):
                error = status.get("error") or {}
                raise AzureError(operation, str(error.get("code") or state), str(error))
            self._sleep(float(retry_after or 1))
        raise AzureError(operation, "Timeout", f"operation not done after {MAX_POLLS} polls")

    def pages(self, operation: str, path: str, api_version: str) -> Iterator[dict[str, Any]]:
        """Every ``value`` item of a list, following ``nextLink``."""
        url: str = f"{path}?api-version={api_version}"
        while url:
            page = self.request(operation, "GET", url)
            yield from page.get("value") or []
            url = str(page.get("nextLink") or "")

    # -- what the IPAM needs ----------------------------------------------------------------------

    def virtual_machines(self) -> list[dict[str, Any]]:
        return list(
            self.pages(
                "VirtualMachines.List",
                f"{self.group_path}/providers/Microsoft.Compute/virtualMachines",
                azure.COMPUTE_API_VERSION,
            )
        )

    def scale_sets(self) -> list[dict[str, Any]]:
        return list(
            self.pages(
                "VirtualMachineScaleSets.List",
                f"{self.group_path}/providers/Microsoft.Compute/virtualMachineScaleSets",
                azure.COMPUTE_API_VERSION,
            )
        )

    def interfaces(self, scale_sets: list[str]) -> list[azure.NIC]:
        """The resource group's NICs and those of every scale set."""
        raws = list(
            self.pages(
                "Interfaces.List",
                f"{self.group_path}/providers/Microsoft.Network/networkInterfaces",
                azure.NETWORK_API_VERSION,
            )
        )
        for name in scale_sets:
            raws += self.pages(
                "Interfaces.ListVirtualMachineScaleSetNetworkInterfaces",
                f"{self.group_path}/providers/Microsoft.Compute/virtualMachineScaleSets/"
                f"{name}/networkInterfaces",
                azure.VMSS_NIC_API_VERSION,
            )
        return [azure.parse_nic(r) for r in raws]

    def virtual_networks(self) -> list[dict[str, Any]]:
        return list(
            self.pages(
                "VirtualNetworks.List",
                f"{self.group_path}/providers/Microsoft.Network/virtualNetworks",
                azure.NETWORK_API_VERSION,
            )
        )

    def vm_sizes(self, location: str) -> list[dict[str, Any]]:
        """Resource SKUs of ``location``."""
        path = f"/subscriptions/{self.subscription_id}/providers/Microsoft.Compute/skus"
        query = urlencode(
            {"api-version": azure.SKUS_API_VERSION, "$filter": f"location eq '{location}'"}
        )
        url: str = f"{path}?{query}"
        out: list[dict[str, Any]] = []
        while url:
            page = self.request("ResourceSkus.List", "GET", url)
            out += page.get("value") or []
            url = str(page.get("nextLink") or "")
        return out

    def add_ip_configurations(self, nic: azure.NIC, names: list[str]) -> None:
        """More IP configurations on a NIC: the scale set VM's profile for a scale set NIC,
        else the NIC itself."""
        if nic.vmss:
            vm = self.request(
                "VirtualMachineScaleSetVMs.Get",
                "GET",
                f"{nic.vm_id}?api-version={azure.COMPUTE_API_VERSION}",
            )
            try:
                body = azure.vmss_vm_with_more_addresses(vm, nic.name, nic.subnet_id, names)
            except KeyError:
                raise AzureError(
                    "VirtualMachineScaleSetVMs.Update",
                    "NotFound",
                    f"{nic.vm_id} has no network interface configuration {nic.name}",
                ) from None
            self.request(
                "VirtualMachineScaleSetVMs.Update",
                "PUT",
                f"{nic.vm_id}?api-version={azure.COMPUTE_API_VERSION}",
                body,
            )
            return
        current = self.request(
            "Interfaces.Get", "GET", f"{nic.id}?api-version={azure.NETWORK_API_VERSION}"
        )
        self.request(
            "Interfaces.CreateOrUpdate",
            "PUT",
            f"{nic.id}?api-version={azure.NETWORK_API_VERSION}",
            azure.nic_with_more_addresses(current, nic.subnet_id, names),
        )
