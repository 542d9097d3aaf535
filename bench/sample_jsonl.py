"""The sample API's sales as JSON Lines: sluice-sample-api's sales-history route paged to its
end (OAuth2 client credentials, `page_token` cursors), one item a line.

    python bench/sample_jsonl.py http://127.0.0.1:18080 OUT.jsonl

Items go through Python's json module, which writes `97.00` as `97.0`: files dumped by this
script agree with each other, which is what a load of one after the other needs.
"""
import base64
import json
import sys
import urllib.parse
import urllib.request


def main(api, out):
    basic = base64.b64encode(b"mock-id:mock-secret").decode()
    req = urllib.request.Request(
        api + "/security/oauth/token?grant_type=client_credentials", method="POST",
        headers={"Authorization": "Basic " + basic})
    token = json.load(urllib.request.urlopen(req))["access_token"]
    cursor, n = None, 0
    with open(out, "w", encoding="utf-8") as f:
        while True:
            q = {"max_results": 500, **({"page_token": cursor} if cursor else {})}
            url = api + "/payments/api/v1/sales/history?" + urllib.parse.urlencode(q)
            page = json.load(urllib.request.urlopen(urllib.request.Request(
                url, headers={"Authorization": "Bearer " + token})))
            for item in page["items"]:
                f.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
            cursor = page["page_info"].get("next_page_token")
            if not cursor:
                break
    print(json.dumps({"items": n, "out": out}))


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
