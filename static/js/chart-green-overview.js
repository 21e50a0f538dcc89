// Green share and CO2 by month (green/buyer_overview.html).
// Data: {{ chart|json_script:"green-data" }} ({months, location, market, share, labels: {location, market, share}}).
(function () {
  "use strict";
  var box = document.getElementById("green-chart");
  var source = document.getElementById("green-data");
  if (!box || !source || !window.echarts || !window.SuanliCharts) { return; }
  var data = JSON.parse(source.textContent);
  var chart = window.echarts.init(box, null, { renderer: "svg" });
  chart.setOption({
    grid: { left: 8, right: 8, top: 64, bottom: 8, containLabel: true },
    tooltip: window.SuanliCharts.tooltip({ trigger: "axis" }),
    legend: { top: 0, type: "scroll" },
    xAxis: { type: "category", data: data.months },
    yAxis: [
      { type: "value", name: "t", min: 0 },
      { type: "value", name: "%", min: 0, max: 100, splitLine: { show: false } }
    ],
    series: [
      { name: data.labels.location, type: "bar", data: data.location, itemStyle: { color: "#9aa5b1" } },
      { name: data.labels.market, type: "bar", data: data.market, itemStyle: { color: "#3d7a5a" } },
      {
        name: data.labels.share, type: "line", yAxisIndex: 1, data: data.share, itemStyle: { color: "#2f9e44" },
        markLine: { silent: true, symbol: "none", data: [{ yAxis: 80 }], lineStyle: { type: "dashed" } }
      }
    ]
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
