package pgsql

import (
	"strings"

	"github.com/portcullis/portcullis/policy"
)

// TagClass returns the class of what a statement did, from the command tag PostgreSQL
// answered it with ("UPDATE 3", "CREATE TABLE", "SELECT 1"). A front end compares it with
// the class it decided: a statement decided as a read that reports an UPDATE means the
// decision was about something else than what ran. Tags it does not know are
// ClassUnknown.
func TagClass(tag string) policy.Class {
	name := TagName(tag)
	if c, ok := tagClasses[name]; ok {
		return c
	}
	for _, p := range [...]string{"CREATE ", "ALTER ", "DROP ", "COMMENT", "SECURITY LABEL", "REFRESH ", "IMPORT "} {
		if strings.HasPrefix(name, p) {
			return policy.ClassDDL
		}
	}
	return policy.ClassUnknown
}

// TagName returns a command tag without its row counts: "INSERT 0 1" -> "INSERT".
func TagName(tag string) string {
	for {
		i := strings.LastIndexByte(tag, ' ')
		if i < 0 || strings.Trim(tag[i+1:], "0123456789") != "" {
			return tag
		}
		tag = tag[:i]
	}
}

var tagClasses = map[string]policy.Class{}

func init() {
	for c, tags := range map[policy.Class][]string{
		policy.ClassRead: {"SELECT", "FETCH", "MOVE", "SHOW", "SET", "RESET", "SET CONSTRAINTS", "BEGIN",
			"START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PREPARE TRANSACTION",
			"COMMIT PREPARED", "ROLLBACK PREPARED", "PREPARE", "DEALLOCATE", "DEALLOCATE ALL", "DISCARD",
			"DISCARD ALL", "DISCARD PLANS", "DISCARD SEQUENCES", "DISCARD TEMP", "DECLARE CURSOR",
			"CLOSE CURSOR", "CLOSE CURSOR ALL", "LISTEN", "UNLISTEN", "EXPLAIN",
			"LOCK TABLE"}, // the tag does not tell ACCESS SHARE (a read) from stronger modes
		policy.ClassWrite:  {"INSERT", "UPDATE", "MERGE", "COPY", "CALL", "NOTIFY"},
		policy.ClassDelete: {"DELETE", "TRUNCATE TABLE"},
		// What the classifier calls admin, by the tags those statements answer with.
		policy.ClassAdmin: {"ALTER SYSTEM", "CREATE ROLE", "ALTER ROLE", "DROP ROLE", "GRANT", "REVOKE",
			"GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES", "CREATE DATABASE", "DROP DATABASE",
			"ALTER DATABASE", "CREATE TABLESPACE", "DROP TABLESPACE", "VACUUM", "ANALYZE", "REINDEX",
			"CLUSTER", "CHECKPOINT", "LOAD", "DO", "CREATE SUBSCRIPTION", "ALTER SUBSCRIPTION",
			"DROP SUBSCRIPTION", "CREATE PUBLICATION", "ALTER PUBLICATION", "REASSIGN OWNED", "DROP OWNED",
			"CREATE FOREIGN DATA WRAPPER", "CREATE SERVER", "CREATE USER MAPPING", "ALTER USER MAPPING"},
	} {
		for _, t := range tags {
			tagClasses[t] = c
		}
	}
}
