"""Unit tests for aisp.signing: golden vectors, verification, tampering, the requests auth and its configuration."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from aisp.errors import SigningError
from aisp.signing import (
    EMPTY_BODY_DIGEST,
    BankSignatureAuth,
    KeyProvider,
    SignatureError,
    StaticKeyProvider,
    build_signing_string,
    compute_digest,
    parse_signature_header,
    request_target,
    sign_request,
    verify_request,
)

pytestmark = pytest.mark.disable_socket

_GOLDEN_VECTORS_JSON = r"""{
 "about": "Golden vectors for the STET draft-cavage HTTP signature (rsa-sha256, PKCS#1 v1.5, SHA-256). Computed by an implementation independent of the project. Signing string lines are joined with \\n, header names lower-cased, (request-target) = lower-case method + space + path[?query]. RSA PKCS#1 v1.5 is deterministic, so a correct signer reproduces each Signature exactly. The key is a throwaway test key.",
 "empty_body_digest": "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
 "private_key_pem": "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC2zjLjXi2qGHcM\n4gjJbZhcWG80vuvYdsGWIHvmFn0qnulVsSdTOVSNoQytOIQngU3zPljEEyaDmlQ6\nP4c0NopBYanFQRsFxawLPiKTjr1ZtHL0MPZDOl/aW/nLUKYN1nmNUzmyXFNqI0oh\nwZ0hOiIlToKuUi0U+In1w4irTAKpWjBHsyhDxxaFDERb9F79aTzcD4kssd4lwEzT\n6B2/CDE4wweAxXjYxZ7K7G9NXZOR3OpsONbIOLjfaTjmiFAIVdIB0G9q0Wc9kLaA\ni4rZLeKM2LJ/+kFNeym9q04KNzVbRn04oQhHDOh8XMPbUen6CCcMfPQsPCWht5co\n5/VcgC6VAgMBAAECggEAKLzbXM1uTjddAm81x5Onjj6764x3ePoACpFrIvuUgaS/\nuXO84IBIbjZ7YXfUhYw8f44/kFR3MwE3r3JcUj+sQEVAJN/tInRqcmfyoyD+Y+kB\nbBckLheqaDoyeMNcef13gY3QMAYApci++rZPqqmuldNA7pGMD94SOoVMZeYOusfn\nciiuqkbw7FF9eRpGjLHTOcIOFJcHtiZetWX4kGmT5AlSq7UinLVUJL1iKlTiWrZn\n8Q0nQ1HL+jv1f9XwBZGe3T6kHizvoo6cHKIvn5fITYa5aVfFg0omeEh06hqDvAHW\nbVLh0W7c/R7WabOYYyXX7i5dv0rFrQurI770Jt+WeQKBgQD/oh/FfJlEdLGnAMsw\nnfww4vFNtEQ+StYIW+0DZhSFkxmS32hmV6ntFq8Pb0Uf3ChzZjv7F0LPEJo+kRs+\nT3YM9EhdGObE9GN/t4Lr9V1UTXdF5U3P70wRUir6R1d61y7ldlOhceWF51+d1fGi\n/mIVWBxoWSMnXsUL/7EI3+m/XQKBgQC3EVSIFXkF9PwS4QSCPjPrEzD24hEB0Iuo\n3PNuMoJek5T2CeTgudud5UZ+0JfhmVJYoTAr/o70RrawHxazJ9Kp+B/seqSmcLL+\nRxtc6XXkHm9oof9Q4c6s0ncZbfeH4mhZFBbpZtAYJJcSCauhhJ8YhvN6/7G8zMts\n52JsMsMQmQKBgQDHnOpgRK5N1S2P8b+4Y/U0m1G/0n7jgX5mIpoN6F0n/LighpE4\nMUYAW5ExZTq96SUxD2jQ5dYGaLl5F8gFPPk6nloPUE2LCCbV6Q9zfzJ0jNURIEBF\nmV91uwrSSnkV9AerqF0fmReYGxb/4bsBAtDGR/pOxSP9LzSA7RVpj6cwBQKBgC7Z\nnIyHEkXYAHrEY2cBjD/o1WsZR8jzGgrJIPNescaKdmDQ/2YTqoSqHHRv5a6ykkRk\nW/OmXedeAXrpOeH3mw4sld7rNB/0T5qLkBEjHiyXLWPVsYV9hGruIdS8M9DuvE2v\nun1Y9oB3PMI8/1OCoUShpMYhkdcDgjwIq0ONaiZhAoGBAILexpkczs4oP+7GirrM\n7ArBtdkFh3P3K7ljEgNpdjxofa9dP1dW3tLy6JVmtIoNokqjA3WQWLnyRYDUbxDQ\nzIoxrdn8Xu+xXDqU+gnXBHWHQeEsoaZ/UTeSHCh7dNadSjjjATYBtWeLfEpoOeAB\nni02FoGzCUfxGfWNBTlnLC2+\n-----END PRIVATE KEY-----\n",
 "public_key_pem": "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAts4y414tqhh3DOIIyW2Y\nXFhvNL7r2HbBliB75hZ9Kp7pVbEnUzlUjaEMrTiEJ4FN8z5YxBMmg5pUOj+HNDaK\nQWGpxUEbBcWsCz4ik469WbRy9DD2Qzpf2lv5y1CmDdZ5jVM5slxTaiNKIcGdIToi\nJU6CrlItFPiJ9cOIq0wCqVowR7MoQ8cWhQxEW/Re/Wk83A+JLLHeJcBM0+gdvwgx\nOMMHgMV42MWeyuxvTV2TkdzqbDjWyDi432k45ohQCFXSAdBvatFnPZC2gIuK2S3i\njNiyf/pBTXspvatOCjc1W0Z9OKEIRwzofFzD21Hp+ggnDHz0LDwlobeXKOf1XIAu\nlQIDAQAB\n-----END PUBLIC KEY-----\n",
 "vectors": [
  {
   "name": "get-accounts-psu-present",
   "method": "GET",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/accounts",
   "body": "",
   "headers": {
    "X-Request-ID": "id-1234567890111121",
    "PSU-IP-Address": "192.168.0.1"
   },
   "date": "Tue, 24 Nov 2026 10:00:00 GMT",
   "signed_headers": [
    "(request-target)",
    "date",
    "digest",
    "x-request-id",
    "psu-ip-address"
   ],
   "key_id": "PSDFR-ACPR-13807",
   "expected": {
    "Digest": "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "signing_string": "(request-target): get /stet/psd2/v1/accounts\ndate: Tue, 24 Nov 2026 10:00:00 GMT\ndigest: SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nx-request-id: id-1234567890111121\npsu-ip-address: 192.168.0.1",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id psu-ip-address\",signature=\"IGS+uKKeDZKqyhn9cx5BgM9zUYEN5UBpTAQkyGxbzGi0EdHveB4PQKikGeaGRpanLBrGLq2wfhgP2TVwAXECMLz+zixsv1spotwo4BH0r1oGaFitkgjOlV+SHYuX8bGFWRbBbG13vvDXe3i4t5uQeykNSbsJlAbE07MtIHQIsk+77vTDqERfa936FNdU+06Kr+vKIDb959f2ifLrkw0ia5RiCqPNXfCd9kpTui9qS1lmMyf50Efunf+pesNHxsrjINwg8JPv/UM5oxJUZHCYJEv+qRs8AX2T5LLuK3/yc9eEzX++WnR0mwIdqgKStcZJmuIzAOb2c3bVjGWJPGblwg==\""
   }
  },
  {
   "name": "put-consents",
   "method": "PUT",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents",
   "body": "{\"balances\":[{\"iban\":\"FR7613807008043001965405158\"}],\"transactions\":[{\"iban\":\"FR7613807008043001965405158\"}],\"trustedBeneficiaries\":true,\"psuIdentity\":true}",
   "headers": {
    "X-Request-ID": "id-1234567890111122",
    "Content-Type": "application/json",
    "PSU-IP-Address": "192.168.0.1"
   },
   "date": "Tue, 24 Nov 2026 10:00:00 GMT",
   "signed_headers": [
    "(request-target)",
    "date",
    "digest",
    "x-request-id",
    "content-type",
    "psu-ip-address"
   ],
   "key_id": "PSDFR-ACPR-13807",
   "expected": {
    "Digest": "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=",
    "signing_string": "(request-target): put /stet/psd2/v1/consents\ndate: Tue, 24 Nov 2026 10:00:00 GMT\ndigest: SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=\nx-request-id: id-1234567890111122\ncontent-type: application/json\npsu-ip-address: 192.168.0.1",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id content-type psu-ip-address\",signature=\"SiUedugHZyXpvTWl0+tXv3PPJxBdfRCewkNLs+GqHKKvWhrRjrz0zd2aiLDb4slFdsReOQlwaQr+2B0eTEPrNNg7SMbCcaFx8VxW3kc2ljeR7gjJq4/dPgP40RsYRYyaUPZIaCjzq9YsmNVZzB75h4M5Y17sgFaRD+COTZdJx4MK9nePdAvqfzsRiSYlwaj6pfb9x5pyha94j6o9/4H4DAwhILw1G8AVtX0SkDYs13qwAMWuHuseMRHr45SL/tKJyn/p7WyEWkPwvi9j4oqSPl0ImciPIK2u2DUIOkCS1wK0JnKkrkEUCeN1h28eN9IG0WSswnDrWw6/KOo6if4sjA==\""
   }
  },
  {
   "name": "get-transactions-page-2-batch",
   "method": "GET",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1.4.2/accounts/038-CPT30019654051/transactions?dateFrom=2026-09-01&page=2",
   "body": "",
   "headers": {
    "X-Request-ID": "3f1c2a9e-6a53-4b8e-9d51-0c7e2f1b7a10"
   },
   "date": "Tue, 24 Nov 2026 10:00:00 GMT",
   "signed_headers": [
    "(request-target)",
    "date",
    "digest",
    "x-request-id"
   ],
   "key_id": "PSDFR-ACPR-13807",
   "expected": {
    "Digest": "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "signing_string": "(request-target): get /stet/psd2/v1.4.2/accounts/038-CPT30019654051/transactions?dateFrom=2026-09-01&page=2\ndate: Tue, 24 Nov 2026 10:00:00 GMT\ndigest: SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nx-request-id: 3f1c2a9e-6a53-4b8e-9d51-0c7e2f1b7a10",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id\",signature=\"IGWLo0NuE544RR/3DgPiPdDVYuZeseSIP5haPPbVaFIP3cGU1kqNz4GsdujIMEG/8/tlyp3SAUlcIQYzrI/oPgpGFh2eawkDd6bRt+kTFHVfBOO9X6OF3rn1AEryPLmgPDT0j8+kvLyc4TLx4y6SsaDb4TlhJzflMFDQkZ02c56M8AY4X0uKui1kHJSBLK0SPgW0diqJiESY/ovmu0pf5x+Cc/eeHUHp+xlxgN0wM/AdcN8SxWFmIIs6FlRqLnoC6H5fgqu3mtysm+fm3YUmM+DwAMLbYoYYS29HbXwG3CjUi+KFceRaPdI2liuhP231DilGwjeDaIU3it1qa1NWow==\""
   }
  }
 ],
 "must_fail": [
  {
   "name": "body-changed",
   "method": "PUT",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents",
   "body": "{\"balances\":[{\"iban\":\"FR7613807008043001965405158\"}],\"transactions\":[{\"iban\":\"FR7613807008043001965405158\"}],\"trustedBeneficiaries\":false,\"psuIdentity\":true}",
   "headers": {
    "X-Request-ID": "id-1234567890111122",
    "Content-Type": "application/json",
    "PSU-IP-Address": "192.168.0.1",
    "Date": "Tue, 24 Nov 2026 10:00:00 GMT",
    "Digest": "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id content-type psu-ip-address\",signature=\"SiUedugHZyXpvTWl0+tXv3PPJxBdfRCewkNLs+GqHKKvWhrRjrz0zd2aiLDb4slFdsReOQlwaQr+2B0eTEPrNNg7SMbCcaFx8VxW3kc2ljeR7gjJq4/dPgP40RsYRYyaUPZIaCjzq9YsmNVZzB75h4M5Y17sgFaRD+COTZdJx4MK9nePdAvqfzsRiSYlwaj6pfb9x5pyha94j6o9/4H4DAwhILw1G8AVtX0SkDYs13qwAMWuHuseMRHr45SL/tKJyn/p7WyEWkPwvi9j4oqSPl0ImciPIK2u2DUIOkCS1wK0JnKkrkEUCeN1h28eN9IG0WSswnDrWw6/KOo6if4sjA==\""
   }
  },
  {
   "name": "psu-ip-changed",
   "method": "PUT",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents",
   "body": "{\"balances\":[{\"iban\":\"FR7613807008043001965405158\"}],\"transactions\":[{\"iban\":\"FR7613807008043001965405158\"}],\"trustedBeneficiaries\":true,\"psuIdentity\":true}",
   "headers": {
    "X-Request-ID": "id-1234567890111122",
    "Content-Type": "application/json",
    "PSU-IP-Address": "10.0.0.9",
    "Date": "Tue, 24 Nov 2026 10:00:00 GMT",
    "Digest": "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id content-type psu-ip-address\",signature=\"SiUedugHZyXpvTWl0+tXv3PPJxBdfRCewkNLs+GqHKKvWhrRjrz0zd2aiLDb4slFdsReOQlwaQr+2B0eTEPrNNg7SMbCcaFx8VxW3kc2ljeR7gjJq4/dPgP40RsYRYyaUPZIaCjzq9YsmNVZzB75h4M5Y17sgFaRD+COTZdJx4MK9nePdAvqfzsRiSYlwaj6pfb9x5pyha94j6o9/4H4DAwhILw1G8AVtX0SkDYs13qwAMWuHuseMRHr45SL/tKJyn/p7WyEWkPwvi9j4oqSPl0ImciPIK2u2DUIOkCS1wK0JnKkrkEUCeN1h28eN9IG0WSswnDrWw6/KOo6if4sjA==\""
   }
  },
  {
   "name": "method-changed",
   "method": "POST",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents",
   "body": "{\"balances\":[{\"iban\":\"FR7613807008043001965405158\"}],\"transactions\":[{\"iban\":\"FR7613807008043001965405158\"}],\"trustedBeneficiaries\":true,\"psuIdentity\":true}",
   "headers": {
    "X-Request-ID": "id-1234567890111122",
    "Content-Type": "application/json",
    "PSU-IP-Address": "192.168.0.1",
    "Date": "Tue, 24 Nov 2026 10:00:00 GMT",
    "Digest": "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id content-type psu-ip-address\",signature=\"SiUedugHZyXpvTWl0+tXv3PPJxBdfRCewkNLs+GqHKKvWhrRjrz0zd2aiLDb4slFdsReOQlwaQr+2B0eTEPrNNg7SMbCcaFx8VxW3kc2ljeR7gjJq4/dPgP40RsYRYyaUPZIaCjzq9YsmNVZzB75h4M5Y17sgFaRD+COTZdJx4MK9nePdAvqfzsRiSYlwaj6pfb9x5pyha94j6o9/4H4DAwhILw1G8AVtX0SkDYs13qwAMWuHuseMRHr45SL/tKJyn/p7WyEWkPwvi9j4oqSPl0ImciPIK2u2DUIOkCS1wK0JnKkrkEUCeN1h28eN9IG0WSswnDrWw6/KOo6if4sjA==\""
   }
  },
  {
   "name": "path-changed",
   "method": "PUT",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consent",
   "body": "{\"balances\":[{\"iban\":\"FR7613807008043001965405158\"}],\"transactions\":[{\"iban\":\"FR7613807008043001965405158\"}],\"trustedBeneficiaries\":true,\"psuIdentity\":true}",
   "headers": {
    "X-Request-ID": "id-1234567890111122",
    "Content-Type": "application/json",
    "PSU-IP-Address": "192.168.0.1",
    "Date": "Tue, 24 Nov 2026 10:00:00 GMT",
    "Digest": "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id content-type psu-ip-address\",signature=\"SiUedugHZyXpvTWl0+tXv3PPJxBdfRCewkNLs+GqHKKvWhrRjrz0zd2aiLDb4slFdsReOQlwaQr+2B0eTEPrNNg7SMbCcaFx8VxW3kc2ljeR7gjJq4/dPgP40RsYRYyaUPZIaCjzq9YsmNVZzB75h4M5Y17sgFaRD+COTZdJx4MK9nePdAvqfzsRiSYlwaj6pfb9x5pyha94j6o9/4H4DAwhILw1G8AVtX0SkDYs13qwAMWuHuseMRHr45SL/tKJyn/p7WyEWkPwvi9j4oqSPl0ImciPIK2u2DUIOkCS1wK0JnKkrkEUCeN1h28eN9IG0WSswnDrWw6/KOo6if4sjA==\""
   }
  },
  {
   "name": "signed-by-another-key",
   "method": "PUT",
   "url": "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents",
   "body": "{\"balances\":[{\"iban\":\"FR7613807008043001965405158\"}],\"transactions\":[{\"iban\":\"FR7613807008043001965405158\"}],\"trustedBeneficiaries\":true,\"psuIdentity\":true}",
   "headers": {
    "X-Request-ID": "id-1234567890111122",
    "Content-Type": "application/json",
    "PSU-IP-Address": "192.168.0.1",
    "Date": "Tue, 24 Nov 2026 10:00:00 GMT",
    "Digest": "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP0=",
    "Signature": "keyId=\"PSDFR-ACPR-13807\",algorithm=\"rsa-sha256\",headers=\"(request-target) date digest x-request-id content-type psu-ip-address\",signature=\"reJUxIoHUFuZo+hf7DVDiL9iu8JnqnZ3f89viUPvrF+25QdTqF90Jr8+NIh+A2u8tbbHDW5PujMUBj3sUBHId1IKsLybA89rvUy6O3AkkDGBpv8jruHqnP+cEtDcaLjxHVkbQU87mjqnMMw0f8Nbo2VIsgxfXiqGJESOvQX6e1LS6UWEEZvaEeEmuBakw3xyFPn2WEwo0SqWsWXle5nEISiDQB1B2Zg528mmbjNhV8VwP331YbVeHMGq3fqeExDD3ohyJaLVcpvRi0VhduGnoge5cHq8OMjDP4t6dWCQnnBGdHmuZPT/laiHh2rXXnluFaQG14CEWFWKLL9QJFS51w==\""
   }
  }
 ]
}
"""  # noqa: E501

# Verbatim copy of /work/shared/reference/signature-vectors.json (computed by an independent implementation),
# embedded so the suite is self-contained on a clean clone.
VECTORS: dict[str, Any] = json.loads(_GOLDEN_VECTORS_JSON)
PRIVATE_PEM: str = VECTORS["private_key_pem"]
PUBLIC_PEM: str = VECTORS["public_key_pem"]
KEY_ID = "PSDFR-ACPR-13807"
FIXED_NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
CONSENT_URL = "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/consents"
ACCOUNTS_URL = "https://www.13807.sandbox.api.89c3.com/stet/psd2/v1/accounts"
CONSENT_BODY = (
    '{"balances":[{"iban":"FR7613807008043001965405158"}],"transactions":[{"iban":"FR7613807008043001965405158"}],'
    '"trustedBeneficiaries":true,"psuIdentity":true}'
)


def _vector_id(vector: Mapping[str, Any]) -> str:
    return str(vector["name"])


def _make_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _self_signed_cert_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test qsealc")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(FIXED_NOW - timedelta(days=1))
        .not_valid_after(FIXED_NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def vector_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(PRIVATE_PEM.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return _make_rsa_key()


def _signed_consent_headers(**overrides: str) -> dict[str, str]:
    """A PUT /consents request signed with the vector key, plus optional header overrides."""
    headers = {"X-Request-ID": "id-1", "Content-Type": "application/json", "PSU-IP-Address": "192.168.0.1"}
    headers.update(sign_request("PUT", CONSENT_URL, headers, CONSENT_BODY, key_id=KEY_ID, private_key_pem=PRIVATE_PEM))
    headers.update(overrides)
    return headers


# ----------------------------------------------------------------------------------------------------------------
# Golden vectors
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_golden_vector_digest_signing_string_and_signature(vector: dict[str, Any]) -> None:
    # Given the vector's request and clock
    now = parsedate_to_datetime(vector["date"])

    # When it is signed with the vector key and the default header policy
    added = sign_request(
        vector["method"],
        vector["url"],
        vector["headers"],
        vector["body"],
        key_id=vector["key_id"],
        private_key_pem=PRIVATE_PEM,
        now=now,
    )

    # Then Date, Digest and Signature match the independent implementation exactly
    expected = vector["expected"]
    assert added["Date"] == vector["date"]
    assert added["Digest"] == expected["Digest"]
    assert added["Signature"] == expected["Signature"]
    lowered = {k.lower(): v for k, v in {**vector["headers"], **added}.items()}
    assert (
        build_signing_string(vector["method"], vector["url"], lowered, vector["signed_headers"])
        == (expected["signing_string"])
    )
    assert parse_signature_header(added["Signature"])["headers"] == " ".join(vector["signed_headers"])


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_golden_vector_with_explicit_header_list_and_existing_date(vector: dict[str, Any]) -> None:
    # Given the vector headers already carrying the Date (lower-case name) and an explicit covered list
    headers = {**vector["headers"], "date": vector["date"]}

    # When signing
    added = sign_request(
        vector["method"],
        vector["url"],
        headers,
        vector["body"].encode(),
        key_id=vector["key_id"],
        private_key_pem=PRIVATE_PEM.encode(),
        signed_headers=vector["signed_headers"],
    )

    # Then no second Date is added and the signature is still the golden one
    assert "Date" not in added
    assert added["Signature"] == vector["expected"]["Signature"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_golden_vector_verifies(vector: dict[str, Any]) -> None:
    # Given the vector request with its expected Date, Digest and Signature
    headers = {
        **vector["headers"],
        "Date": vector["date"],
        "Digest": vector["expected"]["Digest"],
        "Signature": vector["expected"]["Signature"],
    }

    # When verified with the public key, requiring the STET minimum
    key_id = verify_request(
        vector["method"],
        vector["url"],
        headers,
        vector["body"],
        public_key_pem=PUBLIC_PEM,
        required_headers=("(request-target)", "date", "digest", "x-request-id"),
    )

    # Then the keyId is returned
    assert key_id == vector["key_id"]


@pytest.mark.parametrize("case", VECTORS["must_fail"], ids=_vector_id)
def test_must_fail_vectors_are_rejected(case: dict[str, Any]) -> None:
    # Given a tampered request from the vectors file
    # When verifying it
    # Then a SignatureError is raised
    with pytest.raises(SignatureError) as excinfo:
        verify_request(case["method"], case["url"], case["headers"], case["body"], public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason in {"digest_mismatch", "bad_signature"}


def test_empty_body_digest_constant() -> None:
    # Given / When / Then: None, "" and b"" all hash to the documented empty digest
    assert compute_digest(None) == compute_digest("") == compute_digest(b"") == EMPTY_BODY_DIGEST
    assert VECTORS["empty_body_digest"] == EMPTY_BODY_DIGEST


def test_request_target_keeps_url_encoding_and_query() -> None:
    # Given a URL with percent-encoded segments and a query
    url = "https://bank.example/stet/psd2/v1/accounts/123%2Fcard/transactions?dateFrom=2026-09-01&x=a%20b"

    # When / Then the path and query are used exactly as written and the method lower-cased
    assert (
        request_target("GET", url) == "get /stet/psd2/v1/accounts/123%2Fcard/transactions?dateFrom=2026-09-01&x=a%20b"
    )
    assert request_target("PUT", "https://bank.example") == "put /"


def test_default_headers_order_with_psu_headers_in_request_order() -> None:
    # Given headers with several PSU headers, content type and unrelated headers in a mixed order
    headers = {
        "Authorization": "Bearer t",
        "PSU-User-Agent": "UA",
        "X-Request-ID": "r-1",
        "Content-Type": "application/json",
        "psu-ip-address": "10.1.2.3",
        "Accept": "application/json",
    }

    # When signing with the default policy
    added = sign_request("PUT", CONSENT_URL, headers, "{}", key_id=KEY_ID, private_key_pem=PRIVATE_PEM, now=FIXED_NOW)

    # Then the STET order is used, PSU headers in request order, unrelated headers not covered
    assert parse_signature_header(added["Signature"])["headers"] == (
        "(request-target) date digest x-request-id content-type psu-user-agent psu-ip-address"
    )


def test_sign_request_without_covered_header_raises_signing_error() -> None:
    # Given a request without X-Request-ID (covered by the default policy)
    # When signing
    # Then a SigningError naming the header (not a SignatureError) is raised
    with pytest.raises(SigningError) as excinfo:
        sign_request("GET", ACCOUNTS_URL, {}, None, key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    assert not isinstance(excinfo.value, SignatureError)
    assert excinfo.value.details["header"] == "x-request-id"


def test_naive_now_is_taken_as_utc() -> None:
    # Given a naive datetime
    # When signing
    added = sign_request(
        "GET",
        ACCOUNTS_URL,
        {"X-Request-ID": "r"},
        None,
        key_id=KEY_ID,
        private_key_pem=PRIVATE_PEM,
        now=datetime(2026, 11, 24, 10, 0, 0),
    )

    # Then the Date is the same instant in GMT
    assert added["Date"] == "Tue, 24 Nov 2026 10:00:00 GMT"


# ----------------------------------------------------------------------------------------------------------------
# Verification: round trips and tampering
# ----------------------------------------------------------------------------------------------------------------


def test_round_trip_put_with_case_insensitive_lookup() -> None:
    # Given a signed PUT whose header names arrive lower-cased (as some servers expose them)
    headers = {k.lower(): v for k, v in _signed_consent_headers().items()}

    # When verified
    key_id = verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY.encode(), public_key_pem=PUBLIC_PEM)

    # Then it passes
    assert key_id == KEY_ID


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Date", "Tue, 24 Nov 2026 10:00:01 GMT", "bad_signature"),
        ("Digest", "SHA-256=YWxH10BQRrjS+cXY4jPHZcaXOm1m0OM+21ur7wGYBP1=", "digest_mismatch"),
        ("X-Request-ID", "id-2", "bad_signature"),
        ("Content-Type", "text/plain", "bad_signature"),
        ("PSU-IP-Address", "192.168.0.2", "bad_signature"),
    ],
)
def test_each_signed_header_changed_fails(header: str, value: str, reason: str) -> None:
    # Given a correctly signed request with one covered header changed afterwards
    headers = _signed_consent_headers(**{header: value})

    # When verifying
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)

    # Then the right failure is reported
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", CONSENT_URL),
        ("PUT", CONSENT_URL + "?x=1"),
        ("PUT", CONSENT_URL.replace("/v1/", "/v2/")),
    ],
    ids=["method", "query-added", "path"],
)
def test_request_target_changed_fails(method: str, url: str) -> None:
    # Given a signed PUT /consents replayed with another method, path or query
    headers = _signed_consent_headers()

    # When / Then verification fails on the signature
    with pytest.raises(SignatureError) as excinfo:
        verify_request(method, url, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "bad_signature"


def test_body_changed_fails() -> None:
    # Given a signed request whose body changed (Digest left as is)
    headers = _signed_consent_headers()

    # When / Then the Digest check catches it
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY.replace("true", "false"), public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "digest_mismatch"


def test_digest_missing_fails_even_for_empty_body() -> None:
    # Given signed requests from which the Digest header was removed
    headers = _signed_consent_headers()
    del headers["Digest"]
    get_headers = {"X-Request-ID": "r-1"}
    get_headers.update(sign_request("GET", ACCOUNTS_URL, get_headers, None, key_id=KEY_ID, private_key_pem=PRIVATE_PEM))
    del get_headers["Digest"]

    # When / Then both are refused (STET requires Digest on every request)
    for method, url, hdrs, body in (
        ("PUT", CONSENT_URL, headers, CONSENT_BODY),
        ("GET", ACCOUNTS_URL, get_headers, b""),
    ):
        with pytest.raises(SignatureError) as excinfo:
            verify_request(method, url, hdrs, body, public_key_pem=PUBLIC_PEM)
        assert excinfo.value.reason == "missing_digest"


def test_digest_not_covered_with_body_fails_but_is_allowed_without_body() -> None:
    # Given a PUT with a body whose signature does not cover digest, and a GET likewise
    put_headers = {"X-Request-ID": "r-1", "Content-Type": "application/json"}
    put_headers.update(
        sign_request(
            "PUT",
            CONSENT_URL,
            put_headers,
            CONSENT_BODY,
            key_id=KEY_ID,
            private_key_pem=PRIVATE_PEM,
            signed_headers=["(request-target)", "date", "x-request-id"],
        )
    )
    get_headers = {"X-Request-ID": "r-2"}
    get_headers.update(
        sign_request(
            "GET",
            ACCOUNTS_URL,
            get_headers,
            None,
            key_id=KEY_ID,
            private_key_pem=PRIVATE_PEM,
            signed_headers=["(request-target)", "x-request-id"],
        )
    )

    # When verifying
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, put_headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)

    # Then the PUT is refused, and the GET (empty body, digest still present and correct) passes
    assert excinfo.value.reason == "digest_not_signed"
    assert verify_request("GET", ACCOUNTS_URL, get_headers, None, public_key_pem=PUBLIC_PEM) == KEY_ID


def test_digest_with_several_algorithms_uses_sha256() -> None:
    # Given a Digest header listing another algorithm next to SHA-256 (RFC 3230)
    headers = {"X-Request-ID": "r-1"}
    digest = "MD5=1B2M2Y8AsgTpgAmY7PhCfg==, " + compute_digest(b"")
    headers["Digest"] = digest
    headers.update(sign_request("GET", ACCOUNTS_URL, headers, None, key_id=KEY_ID, private_key_pem=PRIVATE_PEM))
    headers["Digest"] = digest  # the signer recomputes Digest; put the multi-valued one back and re-sign over it
    headers.pop("Signature")
    lowered = {k.lower(): v for k, v in headers.items()}
    names = ["(request-target)", "date", "digest", "x-request-id"]
    key = serialization.load_pem_private_key(PRIVATE_PEM.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    raw = key.sign(
        build_signing_string("GET", ACCOUNTS_URL, lowered, names).encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    signature_b64 = base64.b64encode(raw).decode()
    headers["Signature"] = (
        f'keyId="{KEY_ID}",algorithm="rsa-sha256",headers="{" ".join(names)}",signature="{signature_b64}"'
    )

    # When / Then the SHA-256 member is checked and the request verifies
    assert verify_request("GET", ACCOUNTS_URL, headers, b"", public_key_pem=PUBLIC_PEM) == KEY_ID


def test_required_header_dropped_from_headers_param_fails() -> None:
    # Given a request signed without psu-ip-address in headers= (though the header is sent)
    headers = {"X-Request-ID": "r-1", "PSU-IP-Address": "1.2.3.4"}
    headers.update(
        sign_request(
            "GET",
            ACCOUNTS_URL,
            headers,
            None,
            key_id=KEY_ID,
            private_key_pem=PRIVATE_PEM,
            signed_headers=["(request-target)", "date", "digest", "x-request-id"],
        )
    )

    # When the verifier requires psu-ip-address to be covered
    with pytest.raises(SignatureError) as excinfo:
        verify_request(
            "GET",
            ACCOUNTS_URL,
            headers,
            None,
            public_key_pem=PUBLIC_PEM,
            required_headers=["(request-target)", "PSU-IP-Address"],
        )

    # Then it is refused, naming the header
    assert excinfo.value.reason == "required_header_not_signed"
    assert excinfo.value.header == "psu-ip-address"


def test_covered_header_missing_from_request_fails() -> None:
    # Given a signed request from which a covered header was removed
    headers = _signed_consent_headers()
    del headers["PSU-IP-Address"]

    # When / Then
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "missing_header"
    assert excinfo.value.header == "psu-ip-address"


def test_wrong_key_fails(other_key: rsa.RSAPrivateKey) -> None:
    # Given a request signed with the vector key
    headers = _signed_consent_headers()

    # When verified with another public key
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=_public_pem(other_key))

    # Then the signature does not verify
    assert excinfo.value.reason == "bad_signature"


def test_certificate_pem_as_verifier_key(vector_private_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    # Given the signer's certificate (QSealC-like) and a certificate for another key
    good_cert = _self_signed_cert_pem(vector_private_key)
    other_cert = _self_signed_cert_pem(other_key)
    headers = _signed_consent_headers()

    # When / Then the matching certificate verifies and the other one does not
    assert verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=good_cert.encode()) == KEY_ID
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=other_cert)
    assert excinfo.value.reason == "bad_signature"


def test_unusable_verifier_key_is_a_signature_error() -> None:
    # Given a garbage verifier key
    headers = _signed_consent_headers()

    # When / Then verification fails with a stable reason (and no traceback chaining to parser text)
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n")
    assert excinfo.value.reason == "bad_key"


def test_missing_signature_header_fails() -> None:
    # Given a request with Digest but no Signature
    headers = _signed_consent_headers()
    del headers["Signature"]

    # When / Then
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "missing_signature"


def _replace_param(signature: str, name: str, value: str | None) -> str:
    params = parse_signature_header(signature)
    if value is None:
        params.pop(name)
    else:
        params[name] = value
    return ",".join(f'{k}="{v}"' for k, v in params.items())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: "", "missing_signature"),
        (lambda s: "garbage", "malformed_signature"),
        (lambda s: s.replace('keyId="', "keyId="), "malformed_signature"),
        (lambda s: s + ',keyId="again"', "malformed_signature"),
        (lambda s: _replace_param(s, "keyId", None), "malformed_signature"),
        (lambda s: _replace_param(s, "keyId", ""), "malformed_signature"),
        (lambda s: _replace_param(s, "signature", None), "malformed_signature"),
        (lambda s: _replace_param(s, "signature", "not base64!"), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", None), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", ""), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", "date date digest"), "malformed_signature"),
        (lambda s: _replace_param(s, "headers", "(created) date digest"), "malformed_signature"),
        (lambda s: _replace_param(s, "algorithm", "hmac-sha256"), "unsupported_algorithm"),
        (lambda s: _replace_param(s, "algorithm", "rsa-sha1"), "unsupported_algorithm"),
        (lambda s: _replace_param(s, "algorithm", None), "unsupported_algorithm"),
    ],
    ids=[
        "empty",
        "garbage",
        "unquoted",
        "duplicate-param",
        "no-keyid",
        "empty-keyid",
        "no-signature",
        "bad-base64",
        "no-headers",
        "empty-headers",
        "duplicate-header",
        "unsupported-pseudo-header",
        "hmac",
        "sha1",
        "no-algorithm",
    ],
)
def test_malformed_or_unsupported_signature_header_fails(mutate: Any, reason: str) -> None:
    # Given a signed request whose Signature header is damaged
    headers = _signed_consent_headers()
    headers["Signature"] = mutate(headers["Signature"])

    # When / Then the verifier refuses it with a stable reason
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == reason


def test_duplicate_header_spellings_are_refused() -> None:
    # Given a header map with two spellings of the same covered header
    headers = _signed_consent_headers()
    headers["psu-ip-address"] = "6.6.6.6"

    # When / Then the ambiguity is refused
    with pytest.raises(SignatureError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)
    assert excinfo.value.reason == "duplicate_header"


def test_signature_error_is_a_signing_error_with_safe_details() -> None:
    # Given / When a verification failure
    headers = _signed_consent_headers(**{"PSU-IP-Address": "10.9.9.9"})
    with pytest.raises(SigningError) as excinfo:
        verify_request("PUT", CONSENT_URL, headers, CONSENT_BODY, public_key_pem=PUBLIC_PEM)

    # Then it is a SignatureError whose message and details carry no header values or signatures
    assert isinstance(excinfo.value, SignatureError)
    text = str(excinfo.value) + repr(excinfo.value.details)
    assert "10.9.9.9" not in text
    assert parse_signature_header(headers["Signature"])["signature"] not in text


# ----------------------------------------------------------------------------------------------------------------
# BankSignatureAuth through a requests Session with a verifying in-process adapter
# ----------------------------------------------------------------------------------------------------------------


class VerifyingAdapter(HTTPAdapter):
    """In-process transport: verifies the signature with verify_request and answers 200/401 without any socket."""

    def __init__(self, public_key_pem: str, *, tamper: dict[str, str] | None = None) -> None:
        super().__init__()
        self.public_key_pem = public_key_pem
        self.tamper = tamper or {}
        self.seen: list[requests.PreparedRequest] = []
        self.errors: list[SignatureError] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.seen.append(request)
        headers = dict(request.headers)
        headers.update(self.tamper)
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        try:
            key_id = verify_request(
                request.method or "",
                request.url or "",
                headers,
                request.body,
                public_key_pem=self.public_key_pem,
                required_headers=("(request-target)", "date", "digest", "x-request-id"),
            )
        except SignatureError as exc:
            self.errors.append(exc)
            response.status_code = 401
            response._content = json.dumps({"reason": exc.reason}).encode()
        else:
            response.status_code = 200
            response._content = json.dumps({"keyId": key_id}).encode()
        return response


def _session_with(adapter: HTTPAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def test_auth_signs_get_and_put_verified_by_transport() -> None:
    # Given a session whose transport verifies signatures, and the auth configured with the vector key
    adapter = VerifyingAdapter(PUBLIC_PEM)
    session = _session_with(adapter)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    # When a GET with PSU headers and a PUT with a JSON body go through it
    get = session.get(
        ACCOUNTS_URL + "?page=2",
        headers={"X-Request-ID": "r-1", "PSU-IP-Address": "192.168.0.1", "Authorization": "Bearer t"},
        auth=auth,
    )
    put = session.put(
        CONSENT_URL,
        data=CONSENT_BODY.encode(),
        headers={"X-Request-ID": "r-2", "Content-Type": "application/json"},
        auth=auth,
    )

    # Then both verify server-side, with the expected covered headers
    assert (get.status_code, put.status_code) == (200, 200)
    assert get.json() == {"keyId": KEY_ID}
    get_params = parse_signature_header(adapter.seen[0].headers["Signature"])
    put_params = parse_signature_header(adapter.seen[1].headers["Signature"])
    assert get_params["headers"] == "(request-target) date digest x-request-id psu-ip-address"
    assert put_params["headers"] == "(request-target) date digest x-request-id content-type"
    assert adapter.seen[0].headers["Digest"] == EMPTY_BODY_DIGEST
    assert adapter.seen[1].headers["Digest"] == VECTORS["vectors"][1]["expected"]["Digest"]
    assert adapter.errors == []


def test_auth_with_fixed_policy_and_key_provider() -> None:
    # Given an auth with a StaticKeyProvider and the Yolt-style fixed policy
    adapter = VerifyingAdapter(PUBLIC_PEM)
    session = _session_with(adapter)
    auth = BankSignatureAuth(
        key_provider=StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM),
        signed_headers=["(request-target)", "Date", "Digest", "X-Request-ID"],
    )

    # When a GET with a PSU header is sent
    response = session.get(ACCOUNTS_URL, headers={"X-Request-ID": "r-1", "PSU-IP-Address": "1.1.1.1"}, auth=auth)

    # Then it verifies and only the fixed (lower-cased) list is covered
    assert response.status_code == 200
    assert parse_signature_header(adapter.seen[0].headers["Signature"])["headers"] == (
        "(request-target) date digest x-request-id"
    )


def test_auth_keeps_existing_date_and_matches_golden_signature() -> None:
    # Given a prepared request equal to the golden GET /accounts vector (Date already set)
    vector = VECTORS["vectors"][0]
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    request = requests.Request("GET", vector["url"], headers={**vector["headers"], "Date": vector["date"]}).prepare()

    # When the auth signs it in place
    returned = auth(request)

    # Then it is the same object, the Date is kept and the signature is byte-identical to the vector
    assert returned is request
    assert request.headers["Date"] == vector["date"]
    assert request.headers["Signature"] == vector["expected"]["Signature"]


@pytest.mark.parametrize(
    "tamper",
    [
        {"X-Request-ID": "other"},
        {"PSU-IP-Address": "10.0.0.1"},
        {"Date": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"Digest": compute_digest(b"x")},
    ],
    ids=["x-request-id", "psu-ip", "date", "digest"],
)
def test_auth_tampered_in_transit_is_rejected(tamper: dict[str, str]) -> None:
    # Given a transport that alters a header after signing
    adapter = VerifyingAdapter(PUBLIC_PEM, tamper=tamper)
    session = _session_with(adapter)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    # When a signed GET goes through
    response = session.get(ACCOUNTS_URL, headers={"X-Request-ID": "r-1", "PSU-IP-Address": "1.1.1.1"}, auth=auth)

    # Then the verifier refuses it
    assert response.status_code == 401
    assert len(adapter.errors) == 1
    assert response.json()["reason"] in {"bad_signature", "digest_mismatch"}


def test_auth_signed_by_other_key_is_rejected(other_key: rsa.RSAPrivateKey) -> None:
    # Given an auth using another key than the one the server trusts
    adapter = VerifyingAdapter(PUBLIC_PEM)
    session = _session_with(adapter)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=_private_pem(other_key))

    # When / Then
    response = session.get(ACCOUNTS_URL, headers={"X-Request-ID": "r-1"}, auth=auth)
    assert response.status_code == 401
    assert adapter.errors[0].reason == "bad_signature"


class CountingProvider:
    """A KeyProvider that counts how often the key is fetched."""

    def __init__(self) -> None:
        self.calls = 0
        self._inner = StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    @property
    def key_id(self) -> str:
        return self._inner.key_id

    def private_key(self) -> rsa.RSAPrivateKey:
        self.calls += 1
        return self._inner.private_key()


def test_key_is_loaded_once_at_construction() -> None:
    # Given an auth built from a counting provider
    provider = CountingProvider()
    assert isinstance(provider, KeyProvider)
    auth = BankSignatureAuth(key_provider=provider)
    session = _session_with(VerifyingAdapter(PUBLIC_PEM))

    # When several requests are signed
    statuses = [session.get(ACCOUNTS_URL, headers={"X-Request-ID": f"r-{i}"}, auth=auth).status_code for i in range(3)]

    # Then the key was fetched exactly once, at construction
    assert statuses == [200, 200, 200]
    assert provider.calls == 1


def test_auth_refuses_streamed_body() -> None:
    # Given a prepared request with a generator body (cannot be digested without consuming it)
    auth = BankSignatureAuth(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    request = requests.Request("PUT", CONSENT_URL, headers={"X-Request-ID": "r"}, data=iter([b"a", b"b"])).prepare()

    # When / Then
    with pytest.raises(SigningError) as excinfo:
        auth(request)
    assert excinfo.value.details["reason"] == "unsupported_body"


# ----------------------------------------------------------------------------------------------------------------
# Configuration errors never leak key material
# ----------------------------------------------------------------------------------------------------------------

_PEM_BODY_LINE = PRIVATE_PEM.splitlines()[1]


def _ec_private_pem() -> str:
    return _private_pem(ec.generate_private_key(ec.SECP256R1()))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"key_id": KEY_ID, "private_key_pem": "not a pem"}, "bad_pem"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM.replace(_PEM_BODY_LINE, _PEM_BODY_LINE[::-1])}, "bad_pem"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM[:400]}, "bad_pem"),
        ({"key_id": KEY_ID, "private_key_pem": ""}, "empty_key"),
        ({"key_id": "", "private_key_pem": PRIVATE_PEM}, "empty_key_id"),
        ({"key_id": "   ", "private_key_pem": PRIVATE_PEM}, "empty_key_id"),
        ({"key_id": 'a"b', "private_key_pem": PRIVATE_PEM}, "bad_key_id"),
        ({"private_key_pem": PRIVATE_PEM}, "empty_key_id"),
        ({"key_id": KEY_ID}, "bad_configuration"),
        ({}, "bad_configuration"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": []}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": "date digest"}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": ["date", "Date"]}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": ["(created)"]}, "bad_policy"),
        ({"key_id": KEY_ID, "private_key_pem": PRIVATE_PEM, "signed_headers": ["bad name"]}, "bad_policy"),
    ],
    ids=[
        "not-pem",
        "corrupted-pem",
        "truncated-pem",
        "empty-pem",
        "empty-key-id",
        "blank-key-id",
        "quote-in-key-id",
        "missing-key-id",
        "no-key",
        "nothing",
        "empty-policy",
        "string-policy",
        "duplicate-policy",
        "pseudo-header-policy",
        "invalid-header-name",
    ],
)
def test_auth_config_errors(kwargs: dict[str, Any], reason: str) -> None:
    # Given an invalid configuration
    # When building the auth
    with pytest.raises(SigningError) as excinfo:
        BankSignatureAuth(**kwargs)

    # Then a SigningError with a stable reason is raised, and nothing of the key appears in it or its cause chain
    assert excinfo.value.details["reason"] == reason
    rendered = str(excinfo.value) + repr(excinfo.value.details) + repr(excinfo.value.__cause__)
    assert _PEM_BODY_LINE not in rendered
    assert _PEM_BODY_LINE[::-1] not in rendered
    assert "PRIVATE KEY" not in rendered
    assert excinfo.value.__cause__ is None


def test_non_rsa_key_is_refused_without_leaking() -> None:
    # Given an EC private key
    pem = _ec_private_pem()

    # When / Then
    with pytest.raises(SigningError) as excinfo:
        BankSignatureAuth(key_id=KEY_ID, private_key_pem=pem)
    assert excinfo.value.details["reason"] == "not_rsa"
    assert pem.splitlines()[1] not in str(excinfo.value) + repr(excinfo.value.details)


def test_short_rsa_key_is_refused() -> None:
    # Given a 1024-bit RSA key
    pem = _private_pem(_make_rsa_key(1024))

    # When / Then
    with pytest.raises(SigningError) as excinfo:
        StaticKeyProvider(key_id=KEY_ID, private_key_pem=pem)
    assert excinfo.value.details["reason"] == "weak_key"


def test_provider_and_key_id_together_is_refused() -> None:
    # Given both a provider and a key_id / private key
    provider = StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)

    # When / Then each ambiguous combination is refused
    with pytest.raises(SigningError):
        BankSignatureAuth(key_provider=provider, key_id="other")
    with pytest.raises(SigningError):
        BankSignatureAuth(key_provider=provider, private_key_pem=PRIVATE_PEM)


def test_reprs_hide_key_material() -> None:
    # Given an auth and a provider
    provider = StaticKeyProvider(key_id=KEY_ID, private_key_pem=PRIVATE_PEM)
    auth = BankSignatureAuth(key_provider=provider)

    # When / Then their reprs name the keyId only
    for text in (repr(provider), repr(auth)):
        assert KEY_ID in text
        assert _PEM_BODY_LINE not in text
        assert "KEY-----" not in text


def test_sign_request_bad_key_raises_signing_error() -> None:
    # Given / When / Then: the functional API validates the key too
    with pytest.raises(SigningError) as excinfo:
        sign_request("GET", ACCOUNTS_URL, {"X-Request-ID": "r"}, None, key_id=KEY_ID, private_key_pem="nope")
    assert excinfo.value.details["reason"] == "bad_pem"
    with pytest.raises(SigningError):
        sign_request("GET", ACCOUNTS_URL, {"X-Request-ID": "r"}, None, key_id="", private_key_pem=PRIVATE_PEM)
