/* authz.h - L4 authorization with ztunnel's semantics (istio.security.Authorization).
 *
 * Two halves:
 *  - zt_authz_index_build() runs on the control thread after a snapshot is
 *    built (zt_config_parse / xDS). It resolves, once, which policies apply to
 *    each workload of the snapshot: Global-scope policies (any namespace; istiod
 *    gives that scope to policies without a selector in its root namespace,
 *    "istio-system" by default), Namespace-scope policies of the workload's
 *    namespace, and the policies named in the workload's
 *    authorizationPolicies ("namespace/name"; names not in the snapshot are
 *    skipped with a warning, log target "rbac"). Each list is pre-sorted into
 *    dry-run DENY, DENY, dry-run ALLOW, ALLOW.
 *  - zt_authz_check() runs on shards, per connection: pure, lock-free, no
 *    allocation, no I/O, no string lookups of policy keys; its cost is
 *    O(policies applying to the destination).
 *
 * The index points into the snapshot it was built from (policies, workloads)
 * and must be freed no later than that snapshot; publish and retire the two
 * together.
 *
 * Decision (ztunnel src/state.rs assert_rbac, with dry run as in
 * istio/ztunnel#1659 and #1745):
 *   1. every dry-run DENY policy is evaluated; matches are reported;
 *   2. a matching DENY policy denies (first match reported);
 *   3. every dry-run ALLOW policy is evaluated; matches are reported;
 *   4. no ALLOW policy applies -> allow;
 *   5. a matching ALLOW policy allows (first match reported);
 *   6. otherwise deny.
 * Dry-run policies never change the decision. Policies whose action is
 * neither ALLOW nor DENY take no part (istiod sends ztunnel only those two:
 * "ztunnel does not support the AUDIT action"; ztunnel's RbacAction has no
 * other value).
 *
 * Matching (ztunnel src/rbac.rs Authorization::matches): a policy without
 * rules matches nothing; rules are OR'd, a rule's clauses AND'd (a rule with
 * no clauses, or a clause with no matches, matches everything), a clause's
 * matches OR'd, a match with no field set is skipped. In a match every set
 * positive field must match (any of its values) and no value of a set not_
 * field may match. Principals are compared against
 * "<trust domain>/ns/<namespace>/sa/<service account>" (the SPIFFE id without
 * "spiffe://"); a connection without identity (plaintext) matches no
 * principal, not even Presence, so notPrincipals:[Presence] matches it - the
 * form STRICT PeerAuthentication takes. serviceAccounts compare namespace and
 * service account (not the trust domain) and fail without identity.
 * namespaces compare the identity's namespace, "" without identity (so a
 * Prefix "" match accepts plaintext, as in ztunnel). IPs are CIDRs of one
 * family (an IPv4 CIDR never contains an IPv6 address); v4-mapped IPv6
 * connection addresses are matched as IPv4.
 */
#ifndef ZT_AUTHZ_H
#define ZT_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "xds/snapshot.h"

/* The peer's SPIFFE identity spiffe://<trust_domain>/ns/<namespace_>/sa/<service_account>. */
struct zt_authz_identity {
	const char *trust_domain, *namespace_, *service_account;
};

/* What a connection is checked on, as ztunnel builds it (src/proxy/inbound.rs
 * build_inbound_request, src/proxy/inbound_passthrough.rs): for HBONE,
 * `src_ip` is the peer of the TLS connection, `dst` the destination pod's IP
 * that connection reached with the port of the CONNECT target (the target
 * port after service-port mapping when the authority is a hostname), and
 * `identity` the peer certificate's SPIFFE id; for plaintext inbound, the
 * peer and the original destination, no identity. */
struct zt_authz_conn {
	const struct zt_ip *src_ip;
	const struct zt_sockaddr *dst;
	const struct zt_authz_identity *identity; /* NULL: plaintext, no identity */
};

enum zt_authz_reason {
	ZT_AUTHZ_NO_ALLOW_POLICIES = 0, /* allowed: no DENY matched, no ALLOW applies */
	ZT_AUTHZ_ALLOW_MATCHED,         /* allowed by result.policy */
	ZT_AUTHZ_DENY_MATCHED,          /* denied by result.policy */
	ZT_AUTHZ_NOT_ALLOWED,           /* denied: ALLOW policies apply, none matched */
	ZT_AUTHZ_NO_WORKLOAD,           /* denied: no destination workload */
};

/* Dry-run matches kept in a result; more are counted, not stored. */
#define ZT_AUTHZ_DRY_RUN_MAX 8

struct zt_authz_result {
	bool allowed;
	enum zt_authz_reason reason;
	const struct zt_authz_policy *policy; /* the deciding policy, or NULL */
	/* Dry run, for logging only. `dry_run` lists the dry-run policies that
	 * matched: DENY ones first (ztunnel: "dry-run deny policy match"), then
	 * ALLOW ones ("dry-run allow policy match"); n_dry_run counts them all,
	 * only the first ZT_AUTHZ_DRY_RUN_MAX are stored. dry_run_no_allow_match:
	 * no enforced ALLOW policy applies, dry-run ALLOW ones do and none matched
	 * ("dry-run no allow policies match": enforcing them would deny).
	 * dry_run_allowed: the decision if dry-run policies were enforced too
	 * (equal to `allowed` when none applies). */
	bool dry_run_no_allow_match;
	bool dry_run_allowed;
	uint32_t n_dry_run;
	const struct zt_authz_policy *dry_run[ZT_AUTHZ_DRY_RUN_MAX];
};

struct zt_authz_index; /* opaque */

/* Counters from the last build, for logs and /config_dump. */
struct zt_authz_stats {
	size_t policies;        /* policies in the snapshot */
	size_t global;          /* Global scope */
	size_t namespaces;      /* namespaces with Namespace-scope policies */
	size_t workload_refs;   /* per-workload references kept (after de-duplication) */
	size_t unknown_refs;    /* references to names not in the snapshot (skipped) */
	size_t skipped_actions; /* policies with an action other than ALLOW/DENY (ignored) */
};

/* Control thread. Compile the policies of `s` for every workload of `s`.
 * Logs (target "rbac") a warning per unknown policy name referenced by a
 * workload (the first few; then a count). Returns 0 or -ENOMEM (*out is then
 * NULL: do not publish the snapshot without its index, which would let every
 * connection through). `s` may have no policies or no workloads. */
int zt_authz_index_build(const struct zt_snapshot *s, struct zt_authz_index **out);
/* Control thread, once no shard can read the index. NULL is fine. */
void zt_authz_index_free(struct zt_authz_index *ix);
/* Any thread. */
const struct zt_authz_stats *zt_authz_index_stats(const struct zt_authz_index *ix);
/* Any thread. The snapshot the index was built from. */
const struct zt_snapshot *zt_authz_index_snapshot(const struct zt_authz_index *ix);

/* Any thread (shards), lock-free, allocation-free. Decide whether `conn` may
 * reach `dst_wl`, the destination workload (NULL: unknown -> denied,
 * ZT_AUTHZ_NO_WORKLOAD). A workload of the index's snapshot costs one array
 * access to find its policies; another workload (say, from an older
 * snapshot) is resolved by content (namespace search and policy-key
 * lookups), still without allocation; when re-checking a connection after a
 * snapshot change, look its workload up in the new snapshot rather than
 * passing the old one, whose authorizationPolicies may be stale. `ix` NULL
 * means no policies at all. `conn` fields may be NULL (an address then lies
 * in no CIDR). Fills `res`; returns 0 when allowed, -EACCES when denied. */
int zt_authz_check(const struct zt_authz_index *ix, const struct zt_workload *dst_wl,
		   const struct zt_authz_conn *conn, struct zt_authz_result *res);

/* Does one policy match `conn`? (Action, scope and dry run are not looked
 * at.) Any thread, pure. Exposed for tests and tools. */
bool zt_authz_policy_matches(const struct zt_authz_policy *p, const struct zt_authz_conn *conn);

/* ztunnel's wording for a result, for logs: "allowed", "explicitly denied by:
 * ns/name", "allow policies exist, but none allowed", "workload not found".
 * Returns `buf` (always NUL-terminated, truncated to `len`). */
const char *zt_authz_result_str(const struct zt_authz_result *res, char *buf, size_t len);

#endif
