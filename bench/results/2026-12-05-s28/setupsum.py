import re,sys
rows={}
for line in open(sys.argv[1]):
    parts=line.split()
    t,h=parts[0],parts[1]
    d={}
    for m in re.finditer(r'(\S+?)(\{phase="(\w+)"\})? (\d+)',' '.join(parts[2:])):
        d[m.group(1)+(m.group(3) or '')]=int(m.group(4))
    rows.setdefault(h,[]).append((t,d))
for h,rs in rows.items():
    # storm window: from first sample with setups>half to end
    first=[d for t,d in rs if d.get('debug_setups_total',0)>=9500][0]
    last=rs[-1][1]
    n=last['debug_setups_total']-first['debug_setups_total']
    f=lambda k:(last.get(k,0)-first.get(k,0))/max(n,1)/1000
    print(h,'storm setups',n,'avg permit %.0f ms, chats %.0f ms, presence %.0f ms'%(f('debug_setup_us_totalpermit'),f('debug_setup_us_totalchats'),f('debug_setup_us_totalpresence')))
