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
      $('outbox-age').textContent = s.outbox ? (s.outbox.error ? s.outbox.error : fmt(s.outbox.oldest_age_s)+' s') : '-';
      rows('decisions', c.decisions||[], (tr,d)=>{cell(tr,d.stage);cell(tr,d.outcome,d.outcome==='rejected'?'open':'');cell(tr,d.reason||'');cell(tr,fmt(d.count),'n');});
      rows('limited', c.top_limited||[], (tr,d)=>{cell(tr,d.key);cell(tr,fmt(d.count),'n');cell(tr,d.error?('\u00b1'+d.error):'','n muted');});
      rows('circuits', Object.entries(s.circuits||{}), (tr,[k,v])=>{cell(tr,k);cell(tr,v.replace('_','-'),v);});
      $('updated').textContent = 'updated ' + new Date(s.now*1000).toLocaleTimeString() + ' \u00b7 backend ' + s.backend;
    }catch(e){ $('updated').textContent = 'poll failed: ' + e; }
  }
  $('credit-form').addEventListener('submit', async (ev)=>{
    ev.preventDefault(); const q = new URLSearchParams(new FormData(ev.target));
    const r = await fetch('api/credits?'+q, {cache:'no-store', credentials:'same-origin'}); const b = await r.json();
    $('credit-out').textContent = r.ok ? (b.user+' ('+b.type+'): '+b.balance+' credits') : (b.detail||b.title);
  });
  poll(); setInterval(poll, 1000);
})();
