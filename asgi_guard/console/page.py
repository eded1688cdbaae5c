"""The console's HTML: one page, inline CSS and JS, nothing fetched from elsewhere (works offline).

Server-rendered: the route policies (they do not change while the app runs). Filled by the script,
once a second from `api/summary`: every live number. The script writes text only (`textContent`,
never `innerHTML`): limited keys carry client-chosen strings (JWT subjects, resource ids).
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{opacity:.75;font-size:12px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;padding:14px 20px}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}
section.wide{grid-column:1/-1}
h2{font-size:14px;margin:2px 0 8px;text-transform:uppercase;letter-spacing:.04em;color:#4a5263}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#4a5263}td.n{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:10px;flex-wrap:wrap}.tile{flex:1;min-width:90px;background:#f4f5f7;border-radius:4px;padding:6px 10px}
.tile b{display:block;font-size:22px;font-variant-numeric:tabular-nums}.tile small{color:#4a5263}
.closed{color:#17803d}.open{color:#c62828;font-weight:700}.half_open{color:#b26a00;font-weight:700}
code{font-size:12px;background:#f4f5f7;padding:0 3px;border-radius:3px}.muted{color:#8a91a0}
form{display:flex;gap:6px;flex-wrap:wrap}input{padding:4px 6px}#credit-out{margin-top:6px;font-weight:600}
"""

_SCRIPT = """
(function(){
  const $ = (id) => document.getElementById(id);
  function cell(tr, text, cls){const td=document.createElement('td');td.textContent=text;if(cls)td.className=cls;tr.appendChild(td);return td;}
  function rows(id, items, make){const body=$(id);const out=[];for(const it of items){const tr=document.createElement('tr');make(tr,it);out.push(tr);}
    if(!out.length){const tr=document.createElement('tr');cell(tr,'none yet','muted').colSpan=9;out.push(tr);}body.replaceChildren(...out);}
  const fmt = (n) => n===null||n===undefined ? '-' : String(n);
  async function poll(){
    try{
      const r = await fetch('api/summary', {cache:'no-store', credentials:'same-origin'});
      if(r.status===401){location.href='login';return;}
      const s = await r.json(); const c = s.counts || {requests:0,statuses:{},decisions:[],top_limited:[],cache:{}};
      $('requests').textContent = fmt(c.requests);
      for(const k of ['2xx','4xx','5xx']) $('s'+k).textContent = fmt((c.statuses||{})[k]||0);
      const rej = (c.decisions||[]).filter(d=>d.outcome==='rejected').reduce((a,d)=>a+d.count,0);
      $('rejected').textContent = fmt(rej);
      const ratio = c.cache && c.cache.ratio; $('cache-ratio').textContent = ratio===null||ratio===undefined ? '-' : (100*ratio).toFixed(1)+'%';
      $('cache-detail').textContent = c.cache ? (fmt(c.cache.hits)+' hits / '+fmt(c.cache.misses)+' misses') : '';
      $('outbox-depth').textContent = s.outbox ? fmt(s.outbox.depth) : 'n/a';
      $('outbox-age').textContent = s.outbox ? (s.outbox.error ? s.outbox.error : fmt(s.outbox.oldest_age_s)+' s') : 'no events stage';
      rows('decisions', c.decisions||[], (tr,d)=>{cell(tr,d.stage);cell(tr,d.outcome,d.outcome==='rejected'?'open':'');cell(tr,d.reason||'');cell(tr,fmt(d.count),'n');});
      rows('limited', c.top_limited||[], (tr,d)=>{cell(tr,d.key);cell(tr,fmt(d.count),'n');cell(tr,d.error?('\\u00b1'+d.error):'','n muted');});
      rows('circuits', Object.entries(s.circuits||{}), (tr,[k,v])=>{cell(tr,k);cell(tr,v.replace('_','-'),v);});
      $('updated').textContent = 'updated ' + new Date(s.now*1000).toLocaleTimeString() + ' \\u00b7 backend ' + s.backend;
    }catch(e){ $('updated').textContent = 'poll failed: ' + e; }
  }
  $('credit-form').addEventListener('submit', async (ev)=>{
    ev.preventDefault(); const q = new URLSearchParams(new FormData(ev.target));
    const r = await fetch('api/credits?'+q, {cache:'no-store', credentials:'same-origin'}); const b = await r.json();
    $('credit-out').textContent = r.ok ? (b.user+' ('+b.type+'): '+b.balance+' credits') : (b.detail||b.title);
  });
  poll(); setInterval(poll, 1000);
})();
"""


def _limits(row: dict[str, Any]) -> str:
    parts = []
    for limit in row.get("limits", ()):
        parts.append(f"{limit['algo']} <code>{escape(limit['summary'] or str(limit['quota']))}</code>")
    if row.get("shadow"):
        parts.append("shadow")
    if "cache" in row:
        cache = row["cache"]
        parts.append(f"cache {escape(cache['algo'])} {cache['ttl_s']}s{' shared' if cache['shared'] else ''}")
    if "credits" in row:
        parts.append(f"{row['credits']['cost']} {escape(row['credits']['type'])} credits")
    if "circuit_breaker" in row:
        cb = row["circuit_breaker"]
        parts.append(f"breaker {cb['threshold']} fails / {cb['timeout_s']}s")
    if "auth" in row:
        parts.append(f"auth {escape(str(row['auth']))}")
    return "; ".join(parts) or '<span class="muted">-</span>'


def render_page(routes: list[dict[str, Any]]) -> str:
    policy_rows = "".join(
        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            escape(row["template"]),
            escape(",".join(row["methods"])),
            escape(" ".join(s for s in row["stages"] if s != "telemetry")),
            _limits(row),
        )
        for row in routes
    ) or '<tr><td colspan="4" class="muted">no registered routes</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>asgi-guard console</title><style>{_STYLE}</style></head>
<body><header><h1>asgi-guard console</h1><span id="updated">loading...</span></header>
<main>
<section class="wide"><h2>Traffic since start</h2><div class="tiles">
<div class="tile"><b id="requests">-</b><small>requests</small></div>
<div class="tile"><b id="s2xx">-</b><small>2xx</small></div>
<div class="tile"><b id="s4xx">-</b><small>4xx</small></div>
<div class="tile"><b id="s5xx">-</b><small>5xx</small></div>
<div class="tile"><b id="rejected">-</b><small>rejected by a stage</small></div>
<div class="tile"><b id="cache-ratio">-</b><small>cache hit ratio <span id="cache-detail"></span></small></div>
<div class="tile"><b id="outbox-depth">-</b><small>outbox depth, oldest <span id="outbox-age">-</span></small></div>
</div></section>
<section><h2>Decisions by stage and reason</h2><table><thead><tr><th>stage</th><th>outcome</th><th>reason</th><th>count</th></tr></thead><tbody id="decisions"></tbody></table></section>
<section><h2>Top rate-limited keys</h2><table><thead><tr><th>route user resource</th><th>429s</th><th></th></tr></thead><tbody id="limited"></tbody></table>
<h2 style="margin-top:14px">Circuits</h2><table><tbody id="circuits"></tbody></table>
<h2 style="margin-top:14px">Credits balance</h2>
<form id="credit-form" action="api/credits" method="get"><input name="user" placeholder="user (JWT sub)" required maxlength="256">
<input name="type" placeholder="type" value="default" maxlength="256"><button>Look up</button></form><div id="credit-out"></div></section>
<section class="wide"><h2>Route policies</h2><table><thead><tr><th>template</th><th>methods</th><th>stages</th><th>limits</th></tr></thead>
<tbody>{policy_rows}</tbody></table></section>
</main><script>{_SCRIPT}</script></body></html>"""


def render_login(error: str = "") -> str:
    message = f'<p class="open">{escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>asgi-guard console: sign in</title><style>{_STYLE}</style></head>
<body><header><h1>asgi-guard console</h1></header><main><section><h2>Sign in</h2>{message}
<form method="post" action="login"><input type="password" name="token" placeholder="console token" autocomplete="current-password" required>
<button>Open the console</button></form></section></main></body></html>"""
