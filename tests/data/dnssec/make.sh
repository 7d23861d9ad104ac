#!/bin/sh
# Regenerates the pre-signed test zones from template.in with BIND's tools (bind9-utils): one
# key per zone (ECDSAP256SHA256 with the KSK flag, signing everything: a CSK), fixed inception and
# expiration so the stored zones stay valid; NSEC for nsec.example., NSEC3 (1 iteration, a salt)
# for nsec3.example., NSEC3 with opt-out (no salt, 0 iterations: RFC 9276) for optout.example.,
# where the unsigned delegations have no NSEC3 of their own. Writes ZONE.zone (signed) and
# ZONE.anchor (the key as a trust anchor for delv -a) and removes the keys. Run: sh make.sh
set -eu
cd "$(dirname "$0")"
INCEPTION=20260101000000
EXPIRATION=20360101000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for zone in nsec nsec3 optout; do
    origin="$zone.example."
    printf '$ORIGIN %s\n' "$origin" > "$tmp/$zone.unsigned"
    cat template.in >> "$tmp/$zone.unsigned"
    key=$(dnssec-keygen -q -K "$tmp" -a ECDSAP256SHA256 -f KSK -n ZONE "$origin")
    grep -v '^;' "$tmp/$key.key" >> "$tmp/$zone.unsigned"
    case $zone in
        nsec) opts="" ;;
        nsec3) opts="-3 0a1b2c3d -H 1" ;;
        optout) opts="-3 - -H 0 -A" ;;
    esac
    # shellcheck disable=SC2086
    dnssec-signzone -q -K "$tmp" -d "$tmp" -z -N keep -s $INCEPTION -e $EXPIRATION $opts \
        -o "$origin" -f "$zone.zone" "$tmp/$zone.unsigned" > /dev/null
    # delv's anchor file: trust-anchors { NAME static-key FLAGS PROTO ALG "KEY"; };
    awk -v o="$origin" '/^;/ { next } { for (i = 1; i <= NF; i++) if ($i == "DNSKEY") break;
        k = ""; for (j = i + 4; j <= NF; j++) k = k $j;
        printf "trust-anchors {\n  %s static-key %s %s %s \"%s\";\n};\n", o, $(i+1), $(i+2), $(i+3), k }' \
        "$tmp/$key.key" > "$zone.anchor"
done
