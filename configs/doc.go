// Package configs holds Portcullis's configuration schema and its strict loader, beside the
// example and demo configuration files and policies it validates.
//
// Load reads one versioned YAML file (version: 1), decodes it strictly — an unknown key, a
// wrong type or a malformed duration is an error — expands ${ENV} references in string
// values, reads the policy files it names, validates the whole as one, and compiles the
// policies into a policy.Engine. Every problem is reported with the file and line it comes
// from; a configuration with any problem is refused as a whole. docs/config.md documents
// every key.
package configs
