// Spend by month and by provider on the buyer's invoice list (billing/invoice_list.html).
// Data: {{ chart|json_script:"spend-data" }} ({months, total, subsidy, providers: [{name, value}]});
// labels: data-label-total, data-label-subsidy on #spend-month-chart.
(function () {
  "use strict";
  var monthBox = document.getElementById("spend-month-chart");
  var providerBox = document.getElementById("spend-provider-chart");
  var source = document.getElementById("spend-data");
  if (!monthBox || !providerBox || !source || !window.echarts || !window.SuanliCharts) { return; }
  var data = JSON.parse(source.textContent);
  var label = monthBox.dataset;
  var money = function (v) { return "¥" + Number(v).toLocaleString(); };
  var month = window.echarts.init(monthBox, null, { renderer: "svg" });
  month.setOption({
    color: ["#0d6efd", "#20c997"],
    tooltip: window.SuanliCharts.tooltip({ trigger: "axis", valueFormatter: money }),
    legend: { top: 0 },
    grid: { left: 8, right: 8, top: 32, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: data.months },
    yAxis: { type: "value", axisLabel: { formatter: "¥{value}" } },
    series: [
      { name: label.labelTotal, type: "bar", data: data.total },
      { name: label.labelSubsidy, type: "bar", data: data.subsidy }
    ]
  });
  var provider = window.echarts.init(providerBox, null, { renderer: "svg" });
  provider.setOption({
    tooltip: window.SuanliCharts.tooltip({ trigger: "item", valueFormatter: money }),
    series: [{ type: "pie", radius: ["40%", "70%"], data: data.providers, label: { formatter: "{b}\n{d}%", fontSize: 11 } }]
  });
  window.addEventListener("resize", function () { month.resize(); provider.resize(); });
})();
