-- The newest version of each judge that has judged anything (the one the dashboard shows).
with final as (
    select judge, arg_max(judge_version, n) as judge_version
    from (select judge, judge_version, count(*) as n from ev.judgments group by judge, judge_version)
    group by judge
)
select * from final order by judge
