module vaultwrap

go 1.25.3

require (
	github.com/hashicorp/vault v1.21.1
	github.com/hashicorp/vault-plugin-secrets-kubernetes v0.12.0
)

replace (
	github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3
	github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk v0.20.0
	github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
)
