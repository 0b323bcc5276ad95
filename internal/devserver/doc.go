// Package devserver runs the real servers Portcullis works with — PostgreSQL, Redis and
// Vault — as child processes on loopback, for the test harness (internal/testenv) and the
// demo. Children are started with a parent-death signal, so they do not outlive the
// process that started them even when it is killed.
package devserver
